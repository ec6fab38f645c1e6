
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
    internal const string OnnxFolderName = "onnx";

    /// <summary>The config of a module folder (Pooling, Dense), as sentence-transformers saves it.</summary>
    internal const string ModuleConfigFileName = "config.json";
    internal const string SentenceBertConfigFileName = "sentence_bert_config.json";
    internal const string SentenceTransformersConfigFileName = "config_sentence_transformers.json";
    internal const string TokenizerConfigFileName = "tokenizer_config.json";
    internal const string TransformerConfigFileName = "config.json";

    private ModelDefinition(string name, string directory, string onnxPath, string tokenizerPath, ModelSettings settings, string fingerprint)
    {
        Name = name;
        Directory = directory;
        OnnxPath = onnxPath;
        OnnxFile = Path.GetRelativePath(directory, onnxPath).Replace(Path.DirectorySeparatorChar, '/');
        TokenizerPath = tokenizerPath;
        Settings = settings;
        Fingerprint = fingerprint;
    }

    /// <summary>The model's name: its folder's name.</summary>
    public string Name { get; }

    /// <summary>The full path of the model folder.</summary>
    public string Directory { get; }

    /// <summary>The full path of the ONNX file served: <c>model.onnx</c> at the root or under <c>onnx/</c>, or manifest.json's <c>onnx_file</c>.</summary>
    public string OnnxPath { get; }

    /// <summary>The ONNX file served, relative to the folder with '/' separators (e.g. <c>onnx/model_O3.onnx</c>), as ListModels shows it.</summary>
    public string OnnxFile { get; }

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

        var settings = ModelSettingsReader.Read(directory);
        var onnxPath = FindOnnxFile(directory, settings.OnnxFile);
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

        var fingerprint = ModelFingerprint.Compute(onnxPath, tokenizerPath, settings);
        return new ModelDefinition(Path.GetFileName(directory.TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar)), directory, onnxPath, tokenizerPath, settings, fingerprint);
    }

    /// <summary>
    /// The ONNX file as sentence-transformers' ONNX backend finds it: the file asked for (<c>model.onnx</c> unless manifest.json's
    /// <c>onnx_file</c> names another) at the folder's root, else under <c>onnx/</c>. Not there, it is refused with the candidates named.
    /// </summary>
    private static string FindOnnxFile(string directory, string? asked)
    {
        var fileName = asked ?? OnnxFileName;
        foreach (var candidate in new[] { Path.Combine(directory, fileName), Path.Combine(directory, OnnxFolderName, fileName) })
        {
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        var onnxFolder = Path.Combine(directory, OnnxFolderName);
        var found = System.IO.Directory.EnumerateFiles(directory, "*.onnx")
            .Concat(System.IO.Directory.Exists(onnxFolder) ? System.IO.Directory.EnumerateFiles(onnxFolder, "*.onnx") : [])
            .Select(path => Path.GetRelativePath(directory, path).Replace(Path.DirectorySeparatorChar, '/'))
            .Order(StringComparer.Ordinal)
            .ToList();
        var missing = Path.Combine(directory, fileName);
        var choose = found.Count == 0
            ? $"put the model's ONNX export at '{missing}'"
            : $"it has {string.Join(", ", found)}: set \"onnx_file\" in '{Path.Combine(directory, ManifestFileName)}' to the one to serve";
        throw new ModelFolderException($"Model folder '{directory}' has no {fileName} (nor {OnnxFolderName}/{fileName}): {choose}.", missing);
    }
}
