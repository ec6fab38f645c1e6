namespace EmbeddingCache.Storage;

/// <summary>
/// Maps 16-byte keys (content keys, or SHA-256 keys of ids) to packed row locations. Open addressing with
/// linear probing over 24-byte slots, so memory stays between 32 and 64 bytes per entry and no object is
/// allocated per entry. One writer (the store's write loop) and any number of readers, without locks:
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
        int mask = slots.Length - 1;
        for (int i = (int)key.Low & mask; ; i = (i + 1) & mask)
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
    public void Set(ContentKey key, long location)
    {
        if ((_count + 1) * 4L > _slots.Length * 3L)
        {
            Resize(_slots.Length * 2);
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

    private static bool Insert(Slot[] slots, ContentKey key, long storedLocation)
    {
        int mask = slots.Length - 1;
        for (int i = (int)key.Low & mask; ; i = (i + 1) & mask)
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

    private static int CapacityFor(int entries)
    {
        long needed = Math.Max(MinimumCapacity, (entries * 4L / 3) + 1);
        return checked((int)Math.Min(1L << 30, (long)System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)needed)));
    }

    private struct Slot
    {
        public ulong High;
        public ulong Low;

        /// <summary>Row location + 1; 0 marks an empty slot.</summary>
        public long Location;
    }
}
