using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace EmbeddingCache.Storage;

/// <summary>
/// The lock-free read path: copies rows of a generation the caller has entered straight from its mappings,
/// through an index that one writer updates in place (<see cref="KeyIndex"/>). O(1) per key, no allocation.
/// </summary>
internal static class RowGather
{
    /// <summary>
    /// Copies the row <paramref name="index"/> maps each key to into row i of <paramref name="destination"/>,
    /// converted to <paramref name="outputType"/> (little-endian). Rows not found are zero-filled and
    /// <paramref name="found"/>[i] is false.
    /// </summary>
    /// <returns>How many keys were found.</returns>
    public static int Gather(
        StoreGeneration generation, KeyIndex index, ReadOnlySpan<ContentKey> keys, VectorDType outputType, Span<byte> destination, Span<bool> found)
    {
        var rowBytes = CheckDestination(generation, keys.Length, outputType, destination, found);
        return GatherRows(generation, index, keys, outputType, rowBytes, destination, found);
    }

    /// <summary>
    /// Looks every key up, then copies the rows. Random rows of a large cache miss the caches and the TLB (about a
    /// microsecond each here), so each pass prefetches the slot or row a few keys ahead: the misses overlap instead
    /// of queueing one after another.
    /// </summary>
    private static int GatherRows(
        StoreGeneration generation, KeyIndex index, ReadOnlySpan<ContentKey> keys, VectorDType outputType, int rowBytes, Span<byte> destination, Span<bool> found)
    {
        const int SlotsAhead = 16;
        const int RowsAhead = 4;
        var locations = ArrayPool<uint>.Shared.Rent(keys.Length);
        try
        {
            var hits = 0;
            for (var i = 0; i < keys.Length; i++)
            {
                if (i + SlotsAhead < keys.Length)
                {
                    index.Prefetch(keys[i + SlotsAhead]);
                }

                found[i] = index.TryGetValue(keys[i], out locations[i]);
                hits += found[i] ? 1 : 0;
            }

            for (var i = 0; i < keys.Length; i++)
            {
                if (i + RowsAhead < keys.Length && found[i + RowsAhead])
                {
                    PrefetchRow(generation, locations[i + RowsAhead]);
                }

                var target = destination.Slice(i * rowBytes, rowBytes);
                if (found[i])
                {
                    CopyRow(generation, locations[i], outputType, target);
                }
                else
                {
                    target.Clear();
                }
            }

            return hits;
        }
        finally
        {
            ArrayPool<uint>.Shared.Return(locations);
        }
    }

    private static int CheckDestination(StoreGeneration generation, int count, VectorDType outputType, Span<byte> destination, Span<bool> found)
    {
        if (generation.Disposed)
        {
            DiskErrors.ThrowDisposed(nameof(VectorStore));
        }

        var rowBytes = generation.Layout.Dims * outputType.BytesPerElement();
        if ((long)count * rowBytes > destination.Length)
        {
            DiskErrors.ThrowDestinationTooSmall(nameof(destination), (long)count * rowBytes, destination.Length);
        }

        if (found.Length < count)
        {
            DiskErrors.ThrowDestinationTooSmall(nameof(found), count, found.Length);
        }

        return rowBytes;
    }

    private static void PrefetchRow(StoreGeneration generation, uint location)
    {
        var addressing = generation.Addressing;
        generation.Segments[addressing.SegmentOf(location)].PrefetchRow(addressing.RowOf(location));
    }

    private static void CopyRow(StoreGeneration generation, uint location, VectorDType outputType, Span<byte> destination)
    {
        // Segments is read after the index: the writer publishes a new segment before any row in it.
        var addressing = generation.Addressing;
        var source = generation.Segments[addressing.SegmentOf(location)].Row(addressing.RowOf(location));
        var storage = generation.Layout.DType;
        if (storage == outputType)
        {
            source.CopyTo(destination);
        }
        else if (storage == VectorDType.Float32)
        {
            TensorPrimitives.ConvertToHalf(MemoryMarshal.Cast<byte, float>(source), MemoryMarshal.Cast<byte, Half>(destination));
        }
        else
        {
            TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(source), MemoryMarshal.Cast<byte, float>(destination));
        }
    }
}
