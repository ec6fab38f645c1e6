using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;

namespace EmbeddingCache.FunctionalTests.Infrastructure;

/// <summary>Reads the reference .npy files ('&lt;f4', C order) for comparison.</summary>
public static partial class NpyFile
{
    public static float[] ReadFloat32(string path)
    {
        var bytes = File.ReadAllBytes(path);
        int headerLength = bytes[8] | (bytes[9] << 8);
        string header = Encoding.ASCII.GetString(bytes, 10, headerLength);
        Assert.Contains("'<f4'", header);
        Assert.Contains("'fortran_order': False", header);
        Assert.Matches(Shape(), header);
        return MemoryMarshal.Cast<byte, float>(bytes.AsSpan(10 + headerLength)).ToArray();
    }

    [GeneratedRegex(@"'shape': \(\s*\d+,\s*\d+\)")]
    private static partial Regex Shape();
}
