namespace EmbeddingCache.Storage;

/// <summary>Element type of stored or returned vectors, always little-endian.</summary>
public enum VectorDType
{
    /// <summary>IEEE single precision, numpy <c>'&lt;f4'</c>. The default: exact.</summary>
    Float32 = 1,

    /// <summary>IEEE half precision, numpy <c>'&lt;f2'</c>. Halves disk and wire size at ~1e-3 relative error.</summary>
    Float16 = 2,
}
