
namespace EmbeddingCache.Inference;

/// <summary>
/// A model folder <c>artifacts/models/&lt;name&gt;/</c> as read from disk: <c>model.onnx</c>, a WordPiece
/// <c>vocab.txt</c> (or <c>tokenizer.json</c>) and the settings that decide its vectors.
/// </summary>
/// <remarks>
/// Settings come from the sentence-transformers export files where present (<c>modules.json</c>,
/// <c>1_Pooling/config.json</c>, <c>sentence_bert_config.json</c>, <c>config_sentence_transformers.json</c>,
/// <c>tokenizer_config.json</c>), so a folder exported from the Hugging Face ecosystem works as it is;
/// our <c>manifest.json</c> overrides them key by key.
/// </remarks>
public sealed class ModelDefinition
{
    /// <summary>The ONNX graph of the model.</summary>
    public const string OnnxFileName = "model.onnx";

    /// <summary>A BERT WordPiece vocabulary, one token a line; preferred over <see cref="TokenizerJsonFileName"/>.</summary>
    public const string VocabFileName = "vocab.txt";

    /// <summary>A Hugging Face tokenizer (BERT WordPiece only), used when there is no vocab.txt.</summary>
    public const string TokenizerJsonFileName = "tokenizer.json";

    /// <summary>Our settings and the research project's keys; overrides every other file.</summary>
    public const string ManifestFileName = "manifest.json";

    internal const string ModulesFileName = "modules.json";
    internal const string DefaultPoolingFolder = "1_Pooling";
    internal const string PoolingConfigFileName = "config.json";
    internal const string SentenceBertConfigFileName = "sentence_bert_config.json";
    internal const string SentenceTransformersConfigFileName = "config_sentence_transformers.json";
    internal const string TokenizerConfigFileName = "tokenizer_config.json";
    internal const string TransformerConfigFileName = "config.json";

    private ModelDefinition(string name, string directory, string onnxPath, string tokenizerPath, ModelSettings settings, string fingerprint)
    {
        Name = name;
        Directory = directory;
        OnnxPath = onnxPath;
        TokenizerPath = tokenizerPath;
        Settings = settings;
        Fingerprint = fingerprint;
    }

    /// <summary>The model's name: its folder's name.</summary>
    public string Name { get; }

    /// <summary>The full path of the model folder.</summary>
    public string Directory { get; }

    /// <summary>The full path of <c>model.onnx</c>.</summary>
    public string OnnxPath { get; }

    /// <summary>The full path of the tokenizer file: <c>vocab.txt</c> or <c>tokenizer.json</c>.</summary>
    public string TokenizerPath { get; }

    /// <summary>The settings as read from the folder.</summary>
    public ModelSettings Settings { get; }

    /// <summary>
    /// Lowercase hex SHA-256 over the ONNX bytes, the tokenizer bytes and every setting that changes vectors
    /// (pooling, normalisation, max tokens, lowercasing, prefixes). Computed once, at <see cref="Load"/>.
    /// </summary>
    public string Fingerprint { get; }

    /// <summary>The text prepended to a query (<paramref name="query"/> true) or a document before tokenization.</summary>
    public string PrefixFor(bool query) => query ? Settings.QueryPrefix : Settings.DocumentPrefix;

    /// <summary>Reads a model folder.</summary>
    /// <exception cref="ModelFolderException">A file is missing or bad; the message and <see cref="ModelFolderException.FilePath"/> name it.</exception>
    public static ModelDefinition Load(string folder)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        var directory = Path.GetFullPath(folder);
        if (!System.IO.Directory.Exists(directory))
        {
            throw new ModelFolderException($"Model folder '{directory}' does not exist.", directory);
        }

        var onnxPath = Path.Combine(directory, OnnxFileName);
        if (!File.Exists(onnxPath))
        {
            throw new ModelFolderException($"Model folder '{directory}' has no {OnnxFileName}: put the model's ONNX export at '{onnxPath}'.", onnxPath);
        }

        var tokenizerPath = Path.Combine(directory, VocabFileName);
        if (!File.Exists(tokenizerPath))
        {
            tokenizerPath = Path.Combine(directory, TokenizerJsonFileName);
            if (!File.Exists(tokenizerPath))
            {
                throw new ModelFolderException(
                    $"Model folder '{directory}' has no tokenizer: put a WordPiece {VocabFileName} (or a {TokenizerJsonFileName}) at '{Path.Combine(directory, VocabFileName)}'.",
                    Path.Combine(directory, VocabFileName));
            }
        }

        var settings = ModelSettingsReader.Read(directory);
        var fingerprint = ModelFingerprint.Compute(onnxPath, tokenizerPath, settings);
        return new ModelDefinition(Path.GetFileName(directory.TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar)), directory, onnxPath, tokenizerPath, settings, fingerprint);
    }
}
