using System.CommandLine;
using EmbeddingCache.Storage;

namespace EmbeddingCache.Server.Cli;

/// <summary>How a corpus file is read, the same in <c>warm</c> and <c>verify --corpus</c>.</summary>
internal sealed class CorpusOptions
{
    private readonly Option<CorpusFormat> format = new("--format")
    {
        Description = "auto (from the content: Parquet's magic, JSONL when the first character is '{', else TSV), jsonl, tsv or parquet; " +
                      "gzip is always told from the file's magic bytes.",
        DefaultValueFactory = _ => CorpusFormat.Auto,
    };

    private readonly Option<string?> idField = new("--id-field")
    {
        Description = "JSONL field or Parquet column holding the id (default: _id, as BEIR writes it, else id).",
    };

    private readonly Option<string> textField = new("--text-field") { Description = "JSONL field or Parquet column holding the text.", DefaultValueFactory = _ => "text" };

    private readonly Option<string> titleField = new("--title-field")
    {
        Description = "JSONL field or Parquet column holding a document's title, joined as BEIR does: (title + \" \" + text).strip().",
        DefaultValueFactory = _ => "title",
    };

    private readonly Option<string?> kind = new Option<string?>("--kind", "-k")
    {
        Description = "query or document (default: query for a file named queries.jsonl, *-queries.jsonl and the like, as BEIR names them; else document).",
    }.AcceptOnlyFromAmong([.. VectorKindNames.All]);

    public IEnumerable<Option> All => [format, idField, textField, titleField, kind];

    /// <summary>The kind the corpus is embedded as: <c>--kind</c>, else told from a BEIR file name.</summary>
    public VectorKind KindOf(ParseResult parse, FileInfo corpus) =>
        parse.GetValue(kind) is { } name ? VectorKindNames.Parse(name) : IsQueriesFile(corpus.Name) ? VectorKind.Query : VectorKind.Document;

    /// <summary>Opens the corpus as the options say; a file that cannot be opened throws <see cref="InvalidDataException"/> naming it.</summary>
    public CorpusReader Open(ParseResult parse, FileInfo corpus)
    {
        var fields = new CorpusFields(parse.GetValue(idField), parse.GetValue(textField)!, parse.GetValue(titleField)!);
        return CorpusReader.Open(corpus.FullName, parse.GetValue(format), fields, queries: KindOf(parse, corpus) == VectorKind.Query);
    }

    /// <summary>queries.jsonl, queries.jsonl.gz, dev-queries.tsv, queries.parquet: the name before its extensions ends in "queries".</summary>
    private static bool IsQueriesFile(string fileName) =>
        fileName.Split('.')[0].EndsWith("queries", StringComparison.OrdinalIgnoreCase);
}
