using System.Globalization;

namespace EmbeddingCache.Storage;

/// <summary>
/// One <c>NNNNNN.npy</c> file of a kind folder and its <c>NNNNNN.keys.msgpack</c> sidecar, as readers see
/// it: a mapping and a committed row count. Rows below the count never change.
/// </summary>
internal abstract class Segment
{
    /// <summary>Suffix of segment vector files.</summary>
    public const string NpySuffix = ".npy";

    protected Segment(string directory, int number, NpyLayout layout, SegmentMapping mapping)
    {
        Number = number;
        Layout = layout;
        Mapping = mapping;
        NpyPath = Path.Combine(directory, NpyName(number));
        SidecarPath = Path.Combine(directory, SidecarName(number));
    }

    public int Number { get; }

    public NpyLayout Layout { get; }

    public SegmentMapping Mapping { get; }

    public string NpyPath { get; }

    public string SidecarPath { get; }

    public abstract int Rows { get; }

    public abstract long SidecarBytes { get; }

    public abstract bool IsSealed { get; }

    /// <summary>Bytes of committed data on disk: header, committed rows, committed sidecar records.</summary>
    public long ByteCount => Layout.FileLength(Rows) + SidecarBytes;

    public static string NpyName(int number) => number.ToString("D6", CultureInfo.InvariantCulture) + NpySuffix;

    /// <summary>The number of a segment file named <c>NNNNNN.npy</c>; null for any other name.</summary>
    public static int? NumberOf(string fileName) =>
        fileName.Length == 6 + NpySuffix.Length && fileName.EndsWith(NpySuffix, StringComparison.Ordinal)
        && int.TryParse(fileName.AsSpan(0, 6), NumberStyles.None, CultureInfo.InvariantCulture, out int number)
            ? number
            : null;

    public static string SidecarName(int number) => number.ToString("D6", CultureInfo.InvariantCulture) + KeySidecar.Suffix;

    /// <summary>The committed vector bytes of <paramref name="row"/>.</summary>
    public ReadOnlySpan<byte> Row(int row) =>
        Mapping.Slice(Layout.HeaderLength + ((long)row * Layout.RowBytes), Layout.RowBytes);

    /// <summary>Asks the CPU to start loading a row that is about to be copied (see <see cref="SegmentMapping.Prefetch"/>).</summary>
    public void PrefetchRow(int row) =>
        Mapping.Prefetch(Layout.HeaderLength + ((long)row * Layout.RowBytes), Layout.RowBytes);
}

/// <summary>
/// A full segment: truncated to exactly header + rows, fsynced, never written again. Safe to copy,
/// replicate or upload as it is.
/// </summary>
internal sealed class SealedSegment : Segment
{
    public SealedSegment(string directory, int number, NpyLayout layout, int rows, long sidecarBytes)
        : this(directory, number, layout, rows, sidecarBytes, SegmentMapping.Open(Path.Combine(directory, NpyName(number))))
    {
    }

    /// <summary>Takes over the mapping of the appendable segment it was: reads never see a segment unmapped.</summary>
    public SealedSegment(string directory, int number, NpyLayout layout, int rows, long sidecarBytes, SegmentMapping mapping)
        : base(directory, number, layout, mapping)
    {
        Rows = rows;
        SidecarBytes = sidecarBytes;
    }

    public override int Rows { get; }

    public override long SidecarBytes { get; }

    public override bool IsSealed => true;
}
