using System.Runtime.CompilerServices;

namespace EmbeddingCache.Storage;

/// <summary>
/// Maps 16-byte keys (content keys, or SHA-256 keys of ids) to packed row locations. Open addressing with
/// linear probing over 24-byte slots at a load of at most 0.8, placed by multiply-shift so any capacity
/// works: a table sized on open costs 30 bytes per entry, one grown by appends at most 45, and no object
/// is allocated per entry. One writer (the store's write loop) and any number of readers, without locks:
/// a slot's key is written before its location is published with a release write, readers acquire the
/// location first, and a resize publishes a complete new table in one reference write.
/// </summary>
internal sealed class KeyIndex
{
    private const int MinimumCapacity = 16;

    private Slot[] _slots;
    private int _count;

    public KeyIndex(int expectedEntries = 0)
    {
        _slots = new Slot[CapacityFor(expectedEntries)];
    }

    /// <summary>Distinct keys.</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>Bytes held by the table (for memory accounting).</summary>
    public long TableBytes => (long)Volatile.Read(ref _slots).Length * 24;

    public bool TryGetValue(ContentKey key, out long location)
    {
        Slot[] slots = Volatile.Read(ref _slots);
        for (int i = Home(key, slots.Length); ; i = Next(i, slots.Length))
        {
            ref Slot slot = ref slots[i];
            long stored = Volatile.Read(ref slot.Location);
            if (stored == 0)
            {
                location = 0;
                return false;
            }

            if (slot.High == key.High && slot.Low == key.Low)
            {
                location = stored - 1;
                return true;
            }
        }
    }

    public bool ContainsKey(ContentKey key) => TryGetValue(key, out _);

    /// <summary>Adds or replaces the location of <paramref name="key"/>. Writer only.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // millions of calls on open: skip tier-0
    public void Set(ContentKey key, long location)
    {
        if ((_count + 1) * 5L > _slots.Length * 4L)
        {
            Resize(CapacityFor((int)Math.Min(int.MaxValue / 2, _count * 3L / 2)));
        }

        if (Insert(_slots, key, location + 1))
        {
            Volatile.Write(ref _count, _count + 1);
        }
    }

    /// <summary>Grows the table up front when many entries are about to be added (recovery). Writer only.</summary>
    public void EnsureCapacity(int entries)
    {
        int capacity = CapacityFor(entries);
        if (capacity > _slots.Length)
        {
            Resize(capacity);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool Insert(Slot[] slots, ContentKey key, long storedLocation)
    {
        for (int i = Home(key, slots.Length); ; i = Next(i, slots.Length))
        {
            ref Slot slot = ref slots[i];
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
        var slots = new Slot[capacity];
        foreach (Slot slot in _slots)
        {
            if (slot.Location != 0)
            {
                Insert(slots, new ContentKey(slot.High, slot.Low), slot.Location);
            }
        }

        Volatile.Write(ref _slots, slots);
    }

    // Keys are uniformly random, so the high bits of a 32x32 product spread them over any capacity.
    private static int Home(ContentKey key, int capacity) => (int)(((ulong)(uint)key.Low * (ulong)capacity) >> 32);

    private static int Next(int index, int capacity) => index + 1 == capacity ? 0 : index + 1;

    private static int CapacityFor(int entries) =>
        (int)Math.Min(Array.MaxLength, Math.Max(MinimumCapacity, (entries * 5L / 4) + 1));

    private struct Slot
    {
        public ulong High;
        public ulong Low;

        /// <summary>Row location + 1; 0 marks an empty slot.</summary>
        public long Location;
    }
}
