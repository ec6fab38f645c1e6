using System.Buffers;
using System.Buffers.Binary;
using System.IO.Compression;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Parquet;
using Parquet.Schema;

namespace EmbeddingCache.Server.Cli;

/// <summary>How a corpus file is laid out; <see cref="Auto"/> tells it from the content.</summary>
internal enum CorpusFormat
{
    Auto,
    Jsonl,
    Tsv,
    Parquet,
}

/// <summary>
/// The fields (JSONL keys, Parquet columns) a corpus is read from. A null <see cref="Id"/> means BEIR's <c>_id</c>
/// when the first row has one, else <c>id</c>; <see cref="Title"/> is optional in every row.
/// </summary>
internal sealed record CorpusFields(string? Id = null, string Text = "text", string Title = "title");

/// <summary>One corpus row: its id (null when the corpus has none) and the exact text embedded for it.</summary>
internal readonly record struct CorpusRow(string? Id, string Text);

/// <summary>What a whole-file check found: the row count and whether every row has an id (else none has).</summary>
internal readonly record struct CorpusSummary(long Rows, bool HasIds);

/// <summary>
/// Reads a corpus as researchers keep it: BEIR <c>corpus.jsonl</c>/<c>queries.jsonl</c> or any JSONL, TSV
/// ("id TAB text", or text alone), each optionally gzip-compressed (told by its magic bytes, not its name), and
/// Parquet. Rows are streamed; nothing holds the corpus in memory (Parquet: one row group at a time). Every
/// problem is an <see cref="InvalidDataException"/> naming the file and line (or row), and
/// <see cref="ValidateAsync"/> finds them all before a caller stores anything.
/// </summary>
/// <remarks>
/// A document's text is embedded as BEIR's <c>SentenceBERT.encode_corpus</c> builds it: <c>(title + " " +
/// text).strip()</c>, or <c>text.strip()</c> when the row has no title; a query's text as it is, as
/// <c>encode_queries</c> does. So an Embed of that string later finds the row, and a Get or Score by id finds it too.
/// </remarks>
internal sealed class CorpusReader
{
    private const int SniffBytes = 4096;
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly string path;
    private readonly CorpusFields fields;
    private readonly bool queries;

    private CorpusReader(string path, CorpusFormat format, bool compressed, CorpusFields fields, bool queries)
    {
        this.path = path;
        Format = format;
        Compressed = compressed;
        this.fields = fields;
        this.queries = queries;
    }

    public CorpusFormat Format { get; }

    public bool Compressed { get; }

    /// <summary>"JSONL, gzip-compressed", as the verbs print it.</summary>
    public string Description => Format.ToString().ToUpperInvariant() + (Compressed ? ", gzip-compressed" : "");

    /// <summary>
    /// Opens <paramref name="path"/>, telling gzip from its magic bytes and, for <see cref="CorpusFormat.Auto"/>,
    /// Parquet from its magic, JSONL from a first character <c>{</c>, and TSV otherwise.
    /// </summary>
    public static CorpusReader Open(string path, CorpusFormat format, CorpusFields fields, bool queries)
    {
        var head = new byte[SniffBytes];
        int length;
        bool compressed;
        using (var file = File.OpenRead(path))
        {
            length = file.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
            compressed = length >= 2 && head[0] == 0x1f && head[1] == 0x8b;
        }
        if (compressed)
        {
            using var content = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
            try
            {
                length = content.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
            }
            catch (InvalidDataException e)
            {
                throw new InvalidDataException($"{path}: starts like gzip but does not decompress ({e.Message})");
            }
        }
        var parquetMagic = head.AsSpan(0, length).StartsWith("PAR1"u8);
        if (compressed && (parquetMagic || format == CorpusFormat.Parquet))
        {
            throw new InvalidDataException($"{path}: gzip-compressed Parquet is not read: gunzip it first (Parquet compresses its own pages)");
        }
        if (format == CorpusFormat.Auto)
        {
            var text = head.AsSpan(0, length);
            if (text.StartsWith(Encoding.UTF8.Preamble)) text = text[Encoding.UTF8.Preamble.Length..];
            var first = text.IndexOfAnyExcept(" \t\r\n"u8);
            format = parquetMagic ? CorpusFormat.Parquet
                : first >= 0 && text[first] == (byte)'{' ? CorpusFormat.Jsonl
                : CorpusFormat.Tsv;
        }
        return new CorpusReader(path, format, compressed, fields, queries);
    }

    /// <summary>Reads the whole file once and checks every row, so that a corpus failing halfway stores nothing.</summary>
    public async Task<CorpusSummary> ValidateAsync(CancellationToken cancel)
    {
        long rows = 0;
        var hasIds = false;
        await foreach (var row in RowsAsync(cancel))
        {
            rows++;
            hasIds = row.Id is not null;
        }
        return new CorpusSummary(rows, hasIds);
    }

    /// <summary>The rows in file order; throws at the first row that cannot be read, naming it.</summary>
    public IAsyncEnumerable<CorpusRow> RowsAsync(CancellationToken cancel) =>
        Format == CorpusFormat.Parquet ? ParquetRowsAsync(cancel) : LineRowsAsync(cancel);

    private async IAsyncEnumerable<CorpusRow> LineRowsAsync([EnumeratorCancellation] CancellationToken cancel)
    {
        var ids = new IdRule(this, "line");
        await foreach (var (number, line) in LinesAsync(cancel))
        {
            yield return Format == CorpusFormat.Jsonl ? ParseJson(line, number, ids) : ParseTsv(line, number, ids);
        }
    }

    private CorpusRow ParseJson(string line, long number, IdRule ids)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(line);
        }
        catch (JsonException e)
        {
            throw Problem(number, $"not JSON ({e.Message})");
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw Problem(number, $"a JSON {root.ValueKind}, not an object");
            var idField = ids.Field ??= fields.Id ?? (root.TryGetProperty("_id", out _) ? "_id" : "id");
            var id = root.TryGetProperty(idField, out var idValue) ? idValue.ValueKind switch
            {
                JsonValueKind.String => idValue.GetString(),
                JsonValueKind.Number => idValue.GetRawText(),
                JsonValueKind.Null => null,
                _ => throw Problem(number, $"\"{idField}\" is a JSON {idValue.ValueKind}: ids are strings or numbers"),
            } : null;
            if (!root.TryGetProperty(fields.Text, out var text) || text.ValueKind != JsonValueKind.String)
            {
                throw Problem(number, $"no string field \"{fields.Text}\" (name the text field with --text-field)");
            }
            var title = root.TryGetProperty(fields.Title, out var titleValue) ? titleValue.ValueKind switch
            {
                JsonValueKind.String => titleValue.GetString(),
                JsonValueKind.Null => null,
                _ => throw Problem(number, $"\"{fields.Title}\" is a JSON {titleValue.ValueKind}, not a string"),
            } : null;
            return Row(ids.Check(id, number), text.GetString()!, title);
        }
    }

    private CorpusRow ParseTsv(string line, long number, IdRule ids)
    {
        ids.Field ??= "id TAB text";
        var tab = line.IndexOf('\t');
        return tab < 0 ? Row(ids.Check(null, number), line, title: null) : Row(ids.Check(line[..tab], number), line[(tab + 1)..], title: null);
    }

    /// <summary>The text embedded for a row: BEIR's join for documents, the text as it is for queries.</summary>
    private CorpusRow Row(string? id, string text, string? title) =>
        new(id, queries ? text : PythonStrip(title is null ? text : title + " " + text));

    /// <summary>Python's <c>str.strip()</c>: .NET's white space plus the separators U+001C..U+001F, which Python strips too.</summary>
    private static string PythonStrip(string text)
    {
        int start = 0, end = text.Length;
        while (start < end && IsPythonSpace(text[start])) start++;
        while (end > start && IsPythonSpace(text[end - 1])) end--;
        return text[start..end];
    }

    private static bool IsPythonSpace(char c) => char.IsWhiteSpace(c) || c is >= '\x1c' and <= '\x1f';

    /// <summary>Non-empty lines, decoded as strict UTF-8, numbered from 1; a byte that is not text stops it, naming the line.</summary>
    private async IAsyncEnumerable<(long Number, string Line)> LinesAsync([EnumeratorCancellation] CancellationToken cancel)
    {
        Stream file = File.OpenRead(path);
        await using var content = Compressed ? new GZipStream(file, CompressionMode.Decompress) : file;
        var pipe = PipeReader.Create(content, new StreamPipeReaderOptions(bufferSize: 1 << 16));
        long number = 0;
        long decompressed = 0;
        while (true)
        {
            ReadResult result;
            try
            {
                result = await pipe.ReadAsync(cancel);
            }
            catch (InvalidDataException e)
            {
                throw Problem(number + 1, $"the gzip data is corrupt ({e.Message})");
            }
            var buffer = result.Buffer;
            var lines = new List<(long, string)>();
            while (buffer.PositionOf((byte)'\n') is { } end)
            {
                AddLine(buffer.Slice(0, end), ++number, lines);
                buffer = buffer.Slice(buffer.GetPosition(1, end));
            }
            if (result.IsCompleted && !buffer.IsEmpty)
            {
                AddLine(buffer, ++number, lines);
                buffer = buffer.Slice(buffer.End);
            }
            decompressed += result.Buffer.Slice(0, buffer.Start).Length;
            pipe.AdvanceTo(buffer.Start, buffer.End);
            foreach (var line in lines) yield return line;
            if (result.IsCompleted) break;
        }
        await pipe.CompleteAsync();
        if (Compressed) CheckGzipEnd(decompressed);
    }

    /// <summary>
    /// GZipStream ends a cut-short file quietly, as if it were whole: a download stopped halfway would warm half a
    /// corpus without a word. So the end is checked: a gzip file's last 4 bytes are its length mod 2^32. Several gzip
    /// members joined (bgzip writes them) fail the check too, and are refused with what to do.
    /// </summary>
    private void CheckGzipEnd(long decompressed)
    {
        using var file = File.OpenHandle(path);
        Span<byte> trailer = stackalloc byte[4];
        var size = RandomAccess.GetLength(file);
        var read = size < trailer.Length ? 0 : RandomAccess.Read(file, trailer, size - trailer.Length);
        var length = read == trailer.Length ? BinaryPrimitives.ReadUInt32LittleEndian(trailer) : 0;
        if (length != (uint)decompressed)
        {
            throw new InvalidDataException($"{path}: the gzip data ends early ({decompressed} bytes came out, its trailer says {length} mod 2^32): " +
                                           "the file is cut short, or is several gzip files joined (gunzip it and warm the result)");
        }
    }

    private void AddLine(ReadOnlySequence<byte> bytes, long number, List<(long, string)> lines)
    {
        var span = bytes.IsSingleSegment ? bytes.FirstSpan : bytes.ToArray();
        if (number == 1 && span.StartsWith(Encoding.UTF8.Preamble)) span = span[Encoding.UTF8.Preamble.Length..];
        if (span.EndsWith("\r"u8)) span = span[..^1];
        if (span.IsEmpty) return;
        var zero = span.IndexOf((byte)0);
        if (zero >= 0) throw Problem(number, $"binary data (a NUL byte at column {zero + 1}): not a JSONL, TSV or Parquet corpus");
        try
        {
            lines.Add((number, StrictUtf8.GetString(span)));
        }
        catch (DecoderFallbackException)
        {
            throw Problem(number, "bytes that are not UTF-8: not a JSONL, TSV or Parquet corpus (or not UTF-8 encoded)");
        }
    }

    private async IAsyncEnumerable<CorpusRow> ParquetRowsAsync([EnumeratorCancellation] CancellationToken cancel)
    {
        await using var file = File.OpenRead(path);
        await using var reader = await OpenParquetAsync(file, cancel);
        var columns = reader.Schema.GetDataFields();
        DataField? Column(string column, string? requiredBy)
        {
            var field = columns.FirstOrDefault(f => f.Name == column);
            if (field is null && requiredBy is not null)
            {
                throw new InvalidDataException($"{path}: no column \"{column}\" (columns: {string.Join(", ", columns.Select(f => f.Name))}); name another with {requiredBy}");
            }
            // Parquet.Net reports UTF-8 string columns as string or as ReadOnlyMemory<char>, depending on how they were written.
            if (field is not null && (field.IsArray || (field.ClrType != typeof(string) && field.ClrType != typeof(ReadOnlyMemory<char>))))
            {
                throw new InvalidDataException($"{path}: column \"{column}\" holds {(field.IsArray ? "lists" : field.ClrType.Name)}, not strings");
            }
            return field;
        }
        var textColumn = Column(fields.Text, requiredBy: "--text-field")!;
        var idColumn = Column(fields.Id ?? (columns.Any(f => f.Name == "_id") ? "_id" : "id"), requiredBy: fields.Id is null ? null : "--id-field");
        var titleColumn = Column(fields.Title, requiredBy: null);
        var ids = new IdRule(this, "row") { Field = idColumn?.Name ?? "id" };
        long number = 0;
        for (var group = 0; group < reader.RowGroupCount; group++)
        {
            var (idValues, texts, titles) = await ReadRowGroupAsync(reader, group, idColumn, textColumn, titleColumn, cancel);
            for (var i = 0; i < texts.Length; i++)
            {
                number++;
                if (texts[i] is not { } text) throw Problem(number, $"\"{textColumn.Name}\" is null", "row");
                yield return Row(ids.Check(idValues?[i], number), text, titles?[i]);
            }
        }
    }

    private async Task<ParquetReader> OpenParquetAsync(Stream file, CancellationToken cancel)
    {
        try
        {
            return await ParquetReader.CreateAsync(file, cancellationToken: cancel);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw new InvalidDataException($"{path}: not a readable Parquet file ({e.Message})");
        }
    }

    private async Task<(string?[]? Ids, string?[] Texts, string?[]? Titles)> ReadRowGroupAsync(
        ParquetReader reader, int group, DataField? idColumn, DataField textColumn, DataField? titleColumn, CancellationToken cancel)
    {
        try
        {
            using var rows = reader.OpenRowGroupReader(group);
            async Task<string?[]> ReadAsync(DataField column)
            {
                var values = new string[rows.RowCount];
                await rows.ReadAsync(column, values, null, cancel);
                return values;
            }
            return (idColumn is null ? null : await ReadAsync(idColumn), await ReadAsync(textColumn), titleColumn is null ? null : await ReadAsync(titleColumn));
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw new InvalidDataException($"{path}: row group {group} cannot be read ({e.Message})");
        }
    }

    private InvalidDataException Problem(long number, string message, string unit = "line") =>
        new(unit == "line" ? $"{path}:{number}: {message}" : $"{path}: {unit} {number}: {message}");

    /// <summary>Every row has an id or none has: a corpus with both would be stored half by id, half by text alone.</summary>
    private sealed class IdRule(CorpusReader reader, string unit)
    {
        private long? firstWithId;
        private long? firstWithout;

        /// <summary>The id field, once the first row has decided it.</summary>
        public string? Field { get; set; }

        public string? Check(string? id, long number)
        {
            if (id is { Length: 0 }) throw reader.Problem(number, $"an empty id (\"{Field}\"): ids are non-empty strings", unit);
            if (id is null) firstWithout ??= number;
            else firstWithId ??= number;
            if (firstWithId is { } with && firstWithout is { } without)
            {
                var message = id is null
                    ? $"no id (\"{Field}\"), but {unit} {with} has one"
                    : $"an id (\"{Field}\"), but {unit} {without} has none";
                throw reader.Problem(number, message + ": give every row an id, or none (rows are stored under their ids)", unit);
            }
            return id;
        }
    }
}
