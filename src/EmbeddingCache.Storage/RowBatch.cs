namespace EmbeddingCache.Storage;

/// <summary>
/// Rows to append: each a content key and/or an id, and a float32 vector (converted to the store's dtype
/// when written). Reusable through <see cref="Clear"/>; do not change a batch while an append of it runs.
/// </summary>
public sealed class RowBatch
{
    /// <summary>Longest id accepted, in UTF-8 bytes; ids are identifiers, not texts.</summary>
    public const int MaxIdBytes = 65536;

    private float[] _vectors;
    private ContentKey[] _keys;
    private bool[] _hasKey;
    private string?[] _ids;

    /// <summary>Creates an empty batch for vectors of <paramref name="dims"/> floats.</summary>
    /// <param name="dims">Vector width; must equal the target store's <see cref="VectorStore.Dims"/>.</param>
    /// <param name="capacity">Rows to reserve room for; the batch grows past it if needed.</param>
    public RowBatch(int dims, int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(dims, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(capacity);
        Dims = dims;
        capacity = Math.Max(capacity, 1);
        _vectors = new float[checked(dims * capacity)];
        _keys = new ContentKey[capacity];
        _hasKey = new bool[capacity];
        _ids = new string?[capacity];
    }

    /// <summary>Vector width of every row.</summary>
    public int Dims { get; }

    /// <summary>Rows added so far.</summary>
    public int Count { get; private set; }

    /// <summary>
    /// Adds a row. At least one of <paramref name="key"/> and <paramref name="id"/> is required: a row with
    /// neither could never be read.
    /// </summary>
    public void Add(ContentKey? key, string? id, ReadOnlySpan<float> vector)
    {
        if (vector.Length != Dims)
        {
            throw new ArgumentException($"The vector has {vector.Length} floats; this batch holds {Dims}.", nameof(vector));
        }

        if (key is null && id is null)
        {
            throw new ArgumentException("A row needs a content key, an id, or both.", nameof(key));
        }

        if (id is not null && id.Length > MaxIdBytes / 3 && System.Text.Encoding.UTF8.GetByteCount(id) > MaxIdBytes)
        {
            throw new ArgumentException($"The id is longer than {MaxIdBytes} UTF-8 bytes.", nameof(id));
        }

        if (Count == _keys.Length)
        {
            Grow();
        }

        vector.CopyTo(_vectors.AsSpan(Count * Dims, Dims));
        _keys[Count] = key.GetValueOrDefault();
        _hasKey[Count] = key.HasValue;
        _ids[Count] = id;
        Count++;
    }

    /// <summary>Empties the batch, keeping its buffers.</summary>
    public void Clear()
    {
        Array.Clear(_ids, 0, Count);
        Count = 0;
    }

    internal ContentKey? KeyAt(int row) => _hasKey[row] ? _keys[row] : null;

    internal string? IdAt(int row) => _ids[row];

    internal ReadOnlySpan<float> VectorAt(int row) => _vectors.AsSpan(row * Dims, Dims);

    private void Grow()
    {
        var capacity = checked(_keys.Length * 2);
        Array.Resize(ref _vectors, checked(capacity * Dims));
        Array.Resize(ref _keys, capacity);
        Array.Resize(ref _hasKey, capacity);
        Array.Resize(ref _ids, capacity);
    }
}
