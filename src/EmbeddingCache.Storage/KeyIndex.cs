using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace EmbeddingCache.Storage;

/// <summary>
/// Maps 16-byte keys (content keys, or keys of ids) to 32-bit row locations (<see cref="RowAddressing"/>). Open
/// addressing with linear probing over 20-byte slots at a load of at most 0.8, placed by multiply-shift so any
/// capacity works. A table sized on open costs 25 bytes per entry; growth is by a quarter, so a table grown by
/// appends costs at most 31.25: both indexes of a kind stay under 64 bytes per row, and no object is allocated per
/// entry. The table lives in native memory on 2 MiB pages where the OS offers them (<see cref="SlotMemory"/>). One
/// writer (the store's write loop) and any number of readers, without locks: a slot's key is written before its
/// location is published with a release write, readers acquire the location first, and a resize publishes a
/// complete new table in one reference write; a reader holding the old table keeps its memory alive.
/// </summary>
internal sealed class KeyIndex
{
    private const int MinimumCapacity = 16;

    private Table _table;
    private int _count;

    public KeyIndex(int expectedEntries = 0)
    {
        _table = new Table(CapacityFor(expectedEntries));
    }

    /// <summary>Distinct keys.</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>Bytes held by the table (for memory accounting).</summary>
    public long TableBytes => (long)Volatile.Read(ref _table).Capacity * Unsafe.SizeOf<Slot>();

    public bool TryGetValue(ContentKey key, out uint location)
    {
        Table table = Volatile.Read(ref _table);
        for (var i = Home(key, table.Capacity); ; i = Next(i, table.Capacity))
        {
            ref Slot slot = ref table[i];
            var stored = Volatile.Read(ref slot.Location);
            if (stored == 0)
            {
                location = 0;
                GC.KeepAlive(table);
                return false;
            }

            if (slot.High == key.High && slot.Low == key.Low)
            {
                location = stored - 1;
                GC.KeepAlive(table);
                return true;
            }
        }
    }

    /// <summary>Asks the CPU to start loading the slot where a lookup of <paramref name="key"/> begins (a hint only).</summary>
    public unsafe void Prefetch(ContentKey key)
    {
        if (Sse.IsSupported)
        {
            Table table = Volatile.Read(ref _table);
            Sse.Prefetch0(Unsafe.AsPointer(ref table[Home(key, table.Capacity)]));
            GC.KeepAlive(table);
        }
    }

    /// <summary>Adds or replaces the location of <paramref name="key"/> (below <see cref="uint.MaxValue"/>). Writer only.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // millions of calls on open: skip tier-0
    public void Set(ContentKey key, uint location)
    {
        if ((_count + 1) * 5L > _table.Capacity * 4L)
        {
            Resize((int)Math.Min(Array.MaxLength, _table.Capacity + (_table.Capacity / 4L)));
        }

        if (Insert(_table, key, checked(location + 1)))
        {
            Volatile.Write(ref _count, _count + 1);
        }
    }

    /// <summary>Grows the table up front when many entries are about to be added (recovery). Writer only.</summary>
    public void EnsureCapacity(int entries)
    {
        var capacity = CapacityFor(entries);
        if (capacity > _table.Capacity)
        {
            Resize(capacity);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool Insert(Table table, ContentKey key, uint storedLocation)
    {
        for (var i = Home(key, table.Capacity); ; i = Next(i, table.Capacity))
        {
            ref Slot slot = ref table[i];
            if (slot.Location == 0)
            {
                slot.High = key.High;
                slot.Low = key.Low;
                Volatile.Write(ref slot.Location, storedLocation); // publishes the key written above
                return true;
            }

            if (slot.High == key.High && slot.Low == key.Low)
            {
                Volatile.Write(ref slot.Location, storedLocation);
                return false;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Resize(int capacity)
    {
        var table = new Table(capacity);
        for (var i = 0; i < _table.Capacity; i++)
        {
            ref Slot slot = ref _table[i];
            if (slot.Location != 0)
            {
                Insert(table, new ContentKey(slot.High, slot.Low), slot.Location);
            }
        }

        Volatile.Write(ref _table, table);
    }

    // Keys are uniformly random, so the high bits of a 32x32 product spread them over any capacity.
    private static int Home(ContentKey key, int capacity) => (int)(((ulong)(uint)key.Low * (ulong)capacity) >> 32);

    private static int Next(int index, int capacity) => index + 1 == capacity ? 0 : index + 1;

    private static int CapacityFor(int entries) =>
        (int)Math.Min(Array.MaxLength, Math.Max(MinimumCapacity, (entries * 5L / 4) + 1));

    // Packed to 4-byte alignment: 20 bytes rather than 24, which is what keeps two indexes under 64 bytes a row.
    [StructLayout(LayoutKind.Sequential, Pack = 4)]
    private struct Slot
    {
        public ulong High;
        public ulong Low;

        /// <summary>Row location + 1; 0 marks an empty slot.</summary>
        public uint Location;
    }

    /// <summary>A fixed number of zeroed slots. Whoever reads a slot keeps the table reachable until done.</summary>
    private sealed unsafe class Table(int capacity)
    {
        private readonly SlotMemory _memory = new((nuint)capacity * (nuint)sizeof(Slot));

        public int Capacity { get; } = capacity;

        public ref Slot this[int index] => ref ((Slot*)_memory.Pointer)[index];
    }
}

/// <summary>
/// How a kind's index packs a row's place into 32 bits: the segment's slot in the kind above, the row below
/// <see cref="RowBits"/> bits, enough for the longest segment. With the default 65,536 rows per segment that is
/// 65,535 segments of 65,536 rows; any setting addresses about 4 billion rows.
/// </summary>
internal readonly record struct RowAddressing(int RowBits)
{
    /// <summary>The addressing for segments of at most <paramref name="segmentRows"/> rows.</summary>
    public static RowAddressing ForSegmentRows(int segmentRows) =>
        new(32 - System.Numerics.BitOperations.LeadingZeroCount((uint)Math.Max(1, segmentRows) - 1));

    /// <summary>Segments a kind can hold: the index keeps <see cref="uint.MaxValue"/> for its empty slots.</summary>
    public int MaxSegments => (int)Math.Min(int.MaxValue, (uint.MaxValue - 1L) >> RowBits);

    public uint Pack(int slot, int row) => ((uint)slot << RowBits) | (uint)row;

    public int SegmentOf(uint location) => (int)(location >> RowBits);

    public int RowOf(uint location) => (int)(location & ((1u << RowBits) - 1));
}
