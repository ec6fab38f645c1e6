using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;

namespace EmbeddingCache.Inference.Tests;

/// <summary>A folder with a Hugging Face tokenizer.json instead of vocab.txt tokenizes exactly as the reference too.</summary>
[Collection(BuiltInModelsCollection.Name)]
public sealed class TokenizerJsonTests(BuiltInModelsFixture models)
{
    [Fact]
    public void A_tokenizer_json_folder_matches_the_reference_tokens()
    {
        var miniLm = models.Encoders[BuiltInModels.MiniLM].Model;
        using var temp = new TempDirectory();
        var folder = temp.Combine("json-tokenizer");
        Directory.CreateDirectory(folder);
        File.CreateSymbolicLink(Path.Combine(folder, ModelDefinition.OnnxFileName), miniLm.OnnxPath);
        File.WriteAllText(Path.Combine(folder, ModelDefinition.ManifestFileName), """{"pooling": "mean"}""");
        File.WriteAllText(Path.Combine(folder, ModelDefinition.TokenizerJsonFileName), BertTokenizerJson(File.ReadAllLines(miniLm.TokenizerPath)));

        var model = ModelDefinition.Load(folder);
        Assert.EndsWith(ModelDefinition.TokenizerJsonFileName, model.TokenizerPath);
        Assert.NotEqual(miniLm.Fingerprint, model.Fingerprint);
        using var encoder = TextEncoder.Load(model, new EncoderOptions(), NullLoggerFactory.Instance);
        var expected = ReferenceData.Tokens(BuiltInModels.MiniLM, ReferenceData.Document);
        var ids = new long[encoder.MaxTokens];
        var failures = new StringBuilder();
        for (var i = 0; i < expected.Count; i++)
        {
            var count = encoder.Tokenize(ReferenceData.Texts[i].Text, ids);
            if (!ids.AsSpan(0, count).SequenceEqual(expected[i].Ids))
            {
                failures.AppendLine($"{expected[i].Id}: expected [{string.Join(' ', expected[i].Ids)}] got [{string.Join(' ', ids.Take(count))}]");
            }
        }

        Assert.True(failures.Length == 0, failures.ToString());
    }

    [Theory]
    [InlineData("""{"version": "1.0", "added_tokens": [], "normalizer": {"type": "NFC"}, "pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {}}}""")]
    [InlineData("""{"version": "1.0", "model": {"type": "WordPiece", "vocab": {"[UNK]": 0}}}""")]
    [InlineData("""{"version": "1.0", """)]
    public void A_tokenizer_json_that_is_not_bert_wordpiece_is_refused_naming_the_file(string content)
    {
        using var temp = new TempDirectory();
        var folder = temp.Combine("bpe");
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, ModelDefinition.OnnxFileName), "not onnx");
        var path = Path.Combine(folder, ModelDefinition.TokenizerJsonFileName);
        File.WriteAllText(path, content);
        var error = Assert.Throws<ModelFolderException>(() => TextEncoder.Load(ModelDefinition.Load(folder), new EncoderOptions(), NullLoggerFactory.Instance));
        Assert.Equal(path, error.FilePath);
    }

    /// <summary>The tokenizer.json Hugging Face writes for an uncased BERT WordPiece vocabulary.</summary>
    private static string BertTokenizerJson(string[] vocabulary)
    {
        var special = new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" };
        var document = new Dictionary<string, object?>
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = special.Select(token => new Dictionary<string, object>
            {
                ["id"] = Array.IndexOf(vocabulary, token),
                ["content"] = token,
                ["single_word"] = false,
                ["lstrip"] = false,
                ["rstrip"] = false,
                ["normalized"] = false,
                ["special"] = true,
            }).ToArray(),
            ["normalizer"] = new Dictionary<string, object?> { ["type"] = "BertNormalizer", ["clean_text"] = true, ["handle_chinese_chars"] = true, ["strip_accents"] = null, ["lowercase"] = true },
            ["pre_tokenizer"] = new Dictionary<string, object> { ["type"] = "BertPreTokenizer" },
            ["post_processor"] = new Dictionary<string, object>
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new object[]
                {
                    new Dictionary<string, object> { ["SpecialToken"] = new Dictionary<string, object> { ["id"] = "[CLS]", ["type_id"] = 0 } },
                    new Dictionary<string, object> { ["Sequence"] = new Dictionary<string, object> { ["id"] = "A", ["type_id"] = 0 } },
                    new Dictionary<string, object> { ["SpecialToken"] = new Dictionary<string, object> { ["id"] = "[SEP]", ["type_id"] = 0 } },
                },
                ["pair"] = Array.Empty<object>(),
                ["special_tokens"] = new Dictionary<string, object>
                {
                    ["[CLS]"] = new Dictionary<string, object> { ["id"] = "[CLS]", ["ids"] = new[] { Array.IndexOf(vocabulary, "[CLS]") }, ["tokens"] = new[] { "[CLS]" } },
                    ["[SEP]"] = new Dictionary<string, object> { ["id"] = "[SEP]", ["ids"] = new[] { Array.IndexOf(vocabulary, "[SEP]") }, ["tokens"] = new[] { "[SEP]" } },
                },
            },
            ["decoder"] = new Dictionary<string, object> { ["type"] = "WordPiece", ["prefix"] = "##", ["cleanup"] = true },
            ["model"] = new Dictionary<string, object>
            {
                ["type"] = "WordPiece",
                ["unk_token"] = "[UNK]",
                ["continuing_subword_prefix"] = "##",
                ["max_input_chars_per_word"] = 100,
                ["vocab"] = vocabulary.Select((token, id) => (token, id)).GroupBy(p => p.token).ToDictionary(g => g.Key, g => g.First().id),
            },
        };
        return JsonSerializer.Serialize(document);
    }
}
