using CsCheck;
using EmbeddingCache.Engine;
using EmbeddingCache.Storage;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>Model names become folder names: no accepted name, however made, leaves the artifacts root.</summary>
public sealed class ModelNameFuzzTests(ITestOutputHelper output)
{
    private const long Inputs = 50_000;

    [Fact]
    public void No_accepted_model_name_leaves_the_artifacts_root()
    {
        string root = Path.GetFullPath(Path.Combine(Path.GetTempPath(), "embcache-root"));
        var pathish = Gen.String[Gen.Char["./\\\0-_aZ09:~ \u2024\u0085"], 0, 12];
        long accepted = 0;
        Gen.OneOf(Gen.String, pathish, Gen.String[Gen.Char.AlphaNumeric, 1, 200]).Sample(name =>
        {
            if (ModelName.Problem(name) is not null) return;
            Interlocked.Increment(ref accepted);
            string folder = Path.GetFullPath(Path.Combine(root, "embeddings", name));
            Assert.Equal(Path.Combine(root, "embeddings"), Path.GetDirectoryName(folder));
            Assert.Equal(name, Path.GetFileName(folder));
            Assert.DoesNotContain("..", name);
            Assert.InRange(name.Length, 1, ModelName.MaxLength);
        }, iter: Inputs);
        output.WriteLine($"{Inputs} names tried, {accepted} accepted, none outside the root");
        Assert.True(accepted > 0);
    }

    [Fact]
    public void The_artifacts_root_takes_exactly_the_names_a_request_may_use()
    {
        // A trailing newline passed the root's former pattern ('$' matches before a final '\n').
        Assert.False(ArtifactsRoot.IsValidModelName("all-MiniLM-L6-v2\n"));
        Gen.OneOf(Gen.String, Gen.String[Gen.Char["./\\\0-_aZ09\n"], 0, 12], Gen.String[Gen.Char.AlphaNumeric, 120, 136]).Sample(name =>
            Assert.Equal(ModelName.Problem(name) is null, ArtifactsRoot.IsValidModelName(name)), iter: Inputs);
    }
}
