using System.Text.Json;

namespace EmbeddingCache.Server.Cli;

/// <summary>One corpus line: an id (may be null) and its text.</summary>
internal readonly record struct CorpusLine(string? Id, string Text);

/// <summary>
/// Reads a corpus as researchers keep them: JSONL with id and text fields (BEIR style), or TSV with
/// "id TAB text" (MS MARCO style; a single column is text without id). Lines are streamed, never all held.
/// </summary>
internal sealed class CorpusReader(string path, string idField, string textField)
{
    private bool IsJsonLines => path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase)
                                || path.EndsWith(".json", StringComparison.OrdinalIgnoreCase)
                                || (!path.EndsWith(".tsv", StringComparison.OrdinalIgnoreCase) && FirstCharacter() == '{');

    /// <summary>Non-empty lines in the file, for the progress bar's total.</summary>
    public long CountLines() => File.ReadLines(path).LongCount(line => line.Length > 0);

    public IEnumerable<CorpusLine> Lines()
    {
        bool json = IsJsonLines;
        long number = 0;
        foreach (var line in File.ReadLines(path))
        {
            number++;
            if (line.Length == 0) continue;
            yield return json ? ParseJson(line, number) : ParseTsv(line);
        }
    }

    private CorpusLine ParseJson(string line, long number)
    {
        using var document = JsonDocument.Parse(line);
        var root = document.RootElement;
        if (!root.TryGetProperty(textField, out var text) || text.ValueKind != JsonValueKind.String)
        {
            throw new InvalidDataException($"{path}:{number}: no string field \"{textField}\" (choose another with --text-field)");
        }
        string? id = root.TryGetProperty(idField, out var idValue)
            ? idValue.ValueKind == JsonValueKind.String ? idValue.GetString() : idValue.GetRawText()
            : null;
        return new CorpusLine(id, text.GetString()!);
    }

    private static CorpusLine ParseTsv(string line)
    {
        int tab = line.IndexOf('\t');
        return tab < 0 ? new CorpusLine(null, line) : new CorpusLine(line[..tab], line[(tab + 1)..]);
    }

    private int FirstCharacter()
    {
        using var reader = new StreamReader(path);
        int c;
        while ((c = reader.Read()) >= 0 && char.IsWhiteSpace((char)c))
        {
        }
        return c;
    }
}
