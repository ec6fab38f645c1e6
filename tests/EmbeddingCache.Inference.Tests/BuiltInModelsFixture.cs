using Microsoft.Extensions.Logging.Abstractions;

namespace EmbeddingCache.Inference.Tests;

/// <summary>
/// Both built-in models provisioned once into a temporary models directory and loaded, shared by every test
/// class in the <see cref="BuiltInModelsCollection"/> (writing and loading 2 × 90 MB takes a moment).
/// </summary>
public sealed class BuiltInModelsFixture : IDisposable
{
    public BuiltInModelsFixture()
    {
        ModelsDirectory = Path.Combine(Path.GetTempPath(), "embcache-inference-tests-" + Guid.NewGuid().ToString("N"));
        foreach (var name in BuiltInModels.Names)
        {
            var folder = BuiltInModels.Provision(ModelsDirectory, name);
            var definition = ModelDefinition.Load(folder);
            Encoders[name] = TextEncoder.Load(definition, new EncoderOptions(), NullLoggerFactory.Instance);
        }
    }

    public string ModelsDirectory { get; }

    public Dictionary<string, TextEncoder> Encoders { get; } = [];

    public void Dispose()
    {
        foreach (var encoder in Encoders.Values)
        {
            encoder.Dispose();
        }

        Directory.Delete(ModelsDirectory, recursive: true);
    }
}

[CollectionDefinition(Name)]
public sealed class BuiltInModelsCollection : ICollectionFixture<BuiltInModelsFixture>
{
    public const string Name = "built-in models";
}

/// <summary>A directory under the system temp folder, deleted with the test.</summary>
public sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "embcache-inference-test-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string Combine(params string[] parts) => System.IO.Path.Combine([Path, .. parts]);

    public void Dispose() => Directory.Delete(Path, recursive: true);
}
