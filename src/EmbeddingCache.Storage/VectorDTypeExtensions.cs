namespace EmbeddingCache.Storage;

/// <summary>What follows from an element type, written once for every project.</summary>
public static class VectorDTypeExtensions
{
    /// <summary>Bytes of one element: 4 for <see cref="VectorDType.Float32"/>, 2 for <see cref="VectorDType.Float16"/>.</summary>
    public static int BytesPerElement(this VectorDType dtype) => dtype == VectorDType.Float16 ? 2 : 4;
}
