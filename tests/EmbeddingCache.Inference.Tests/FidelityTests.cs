using Xunit.Abstractions;

namespace EmbeddingCache.Inference.Tests;

/// <summary>Vectors must be what sentence-transformers produces: cosine >= 0.9999 to the reference, text by text.</summary>
[Collection(BuiltInModelsCollection.Name)]
public sealed class FidelityTests(BuiltInModelsFixture models, ITestOutputHelper output)
{
    private const double MinimumCosine = 0.9999;

    [Theory]
    [MemberData(nameof(TokenizerTests.ModelsAndKinds), MemberType = typeof(TokenizerTests))]
    public void Vectors_match_the_reference_text_by_text(string model, string kind)
    {
        var encoder = models.Encoders[model];
        var (expected, rows, dims) = ReferenceData.Vectors(model, kind);
        var texts = ReferenceData.Texts;
        Assert.Equal(texts.Count, rows);
        Assert.Equal(dims, encoder.Dims);
        var prefix = encoder.Model.PrefixFor(kind == ReferenceData.Query);
        var actual = new float[texts.Count * dims];
        encoder.Encode(texts.Select(t => prefix + t.Text).ToArray(), actual);

        var worst = (Cosine: double.MaxValue, Id: "");
        var below = new List<string>();
        for (var i = 0; i < rows; i++)
        {
            var cosine = ReferenceData.Cosine(actual.AsSpan(i * dims, dims), expected.AsSpan(i * dims, dims));
            if (cosine < worst.Cosine)
            {
                worst = (cosine, texts[i].Id);
            }

            if (!(cosine >= MinimumCosine))
            {
                below.Add($"{texts[i].Id} ({texts[i].Category}): {cosine:F7}");
            }

            var norm = Math.Sqrt(actual.AsSpan(i * dims, dims).ToArray().Sum(x => (double)x * x));
            Assert.InRange(norm, 0.99999, 1.00001);
        }

        output.WriteLine($"{model} {kind}: min cosine {worst.Cosine:F9} (1 - cosine = {1 - worst.Cosine:E2}, {worst.Id}) over {rows} texts");
        Assert.True(below.Count == 0, $"below {MinimumCosine}: {string.Join("; ", below)}");
    }

    [Fact]
    public void Queries_and_documents_differ_only_where_the_model_has_a_prefix()
    {
        var miniLm = models.Encoders[BuiltInModels.MiniLM].Model;
        var arctic = models.Encoders[BuiltInModels.ArcticXs].Model;
        Assert.Equal(miniLm.PrefixFor(query: true), miniLm.PrefixFor(query: false));
        Assert.Equal("Represent this sentence for searching relevant passages: ", arctic.PrefixFor(query: true));
        Assert.Equal("", arctic.PrefixFor(query: false));
    }

    [Fact]
    public void A_text_gets_the_same_vector_alone_and_in_a_batch_with_long_texts()
    {
        // Padding to the longest member must not leak into the pooled vector.
        var encoder = models.Encoders[BuiltInModels.MiniLM];
        var dims = encoder.Dims;
        var alone = new float[dims];
        encoder.Encode(["a short query"], alone);
        var batched = new float[3 * dims];
        encoder.Encode([ReferenceData.Texts[32].Text, "a short query", ReferenceData.Texts[33].Text], batched);
        Assert.True(ReferenceData.Cosine(alone, batched.AsSpan(dims, dims)) > 0.999999);
    }
}
