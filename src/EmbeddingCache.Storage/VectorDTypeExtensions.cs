namespace EmbeddingCache.Storage;

/// <summary>What follows from an element type, written once for every project.</summary>
public static class VectorDTypeExtensions
{
    /// <summary>Bytes of one element: 4 for <see cref="VectorDType.Float32"/>, 2 for <see cref="VectorDType.Float16"/>.</summary>
    public static int BytesPerElement(this VectorDType dtype) => dtype == VectorDType.Float16 ? 2 : 4;

    /// <summary>numpy's name for the element type, as .npy headers and manifests spell it: <c>&lt;f4</c> or <c>&lt;f2</c>.</summary>
    public static string NpyDescr(this VectorDType dtype) => dtype == VectorDType.Float16 ? "<f2" : "<f4";
}
