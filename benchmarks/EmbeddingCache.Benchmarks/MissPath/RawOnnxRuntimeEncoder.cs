using EmbeddingCache.Inference;
using System.Numerics.Tensors;
using FastBertTokenizer;
using Microsoft.ML.OnnxRuntime;

namespace EmbeddingCache.Benchmarks.MissPath;

/// <summary>What one <see cref="RawOnnxRuntimeEncoder.Encode"/> call ran: real tokens and token positions incl. padding.</summary>
public readonly record struct EncodeWork(long Tokens, long PaddedTokens, int Batches);

/// <summary>
/// The ceiling of the miss path, scenario (a): ONNX Runtime used directly, with nothing of EmbeddingCache in the
/// way. Texts are tokenized with FastBertTokenizer (truncated to the model's max tokens), sorted by token count
/// across the whole call, cut into fixed batches of <see cref="BatchSize"/>, each padded to its longest member,
/// run, mean-pooled over the attention mask and L2-normalised into rows in input order. The session is set up as
/// the server sets up its own (all graph optimisations, one intra-op thread per core, sequential execution).
/// </summary>
public sealed class RawOnnxRuntimeEncoder : IDisposable
{
    /// <summary>Texts per batch, fixed.</summary>
    public const int BatchSize = 32;

    private static readonly string[] TokenOutputNames = ["last_hidden_state", "token_embeddings"];

    private readonly InferenceSession _session;
    private readonly RunOptions _runOptions = new();
    private readonly BertTokenizer _tokenizer;
    private readonly int _maxTokens;
    private readonly string[] _inputNames;
    private readonly string[] _outputNames;

    private RawOnnxRuntimeEncoder(InferenceSession session, BertTokenizer tokenizer, int maxTokens, string[] inputNames, string outputName, int dims)
    {
        _session = session;
        _tokenizer = tokenizer;
        _maxTokens = maxTokens;
        _inputNames = inputNames;
        _outputNames = [outputName];
        Dims = dims;
    }

    /// <summary>Width of the sentence vectors.</summary>
    public int Dims { get; }

    /// <summary>Loads <c>model.onnx</c> and the uncased WordPiece <c>vocab.txt</c> of a model folder.</summary>
    public static RawOnnxRuntimeEncoder Load(string onnxPath, string vocabPath, int maxTokens, int intraOpThreads)
    {
        var tokenizer = new BertTokenizer();
        using (var vocabulary = new StreamReader(vocabPath))
        {
            tokenizer.LoadVocabulary(vocabulary, convertInputToLowercase: true);
        }

        using var options = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            IntraOpNumThreads = intraOpThreads,
            InterOpNumThreads = 1,
            EnableCpuMemArena = true,
        };
        var session = new InferenceSession(onnxPath, options);
        var inputs = new[] { "input_ids", "attention_mask", "token_type_ids" }.Where(session.InputMetadata.ContainsKey).ToArray();
        var output = TokenOutputNames.FirstOrDefault(session.OutputMetadata.ContainsKey)
            ?? throw new InvalidOperationException($"'{onnxPath}' has no token-level output ({string.Join(", ", TokenOutputNames)}).");
        var dims = session.OutputMetadata[output].Dimensions[^1];
        return new RawOnnxRuntimeEncoder(session, tokenizer, maxTokens, inputs, output, dims);
    }

    /// <summary>Encodes <paramref name="texts"/> into <paramref name="output"/> (<c>texts.Count * Dims</c> floats, input order).</summary>
    public EncodeWork Encode(IReadOnlyList<string> texts, Span<float> output)
    {
        var count = texts.Count;
        var tokenized = new long[count][];
        var lengths = new int[count];
        var order = new int[count];
        Span<long> ids = stackalloc long[_maxTokens];
        Span<long> mask = stackalloc long[_maxTokens];
        for (var i = 0; i < count; i++)
        {
            var length = _tokenizer.Encode(texts[i], ids, mask);
            tokenized[i] = ids[..length].ToArray();
            lengths[i] = length;
            order[i] = i;
        }

        Array.Sort(lengths, order);
        long tokens = 0, padded = 0;
        var batches = 0;
        for (var start = 0; start < count; start += BatchSize)
        {
            var rows = Math.Min(BatchSize, count - start);
            var width = lengths[start + rows - 1];
            RunBatch(tokenized, order.AsSpan(start, rows), width, output);
            for (var r = 0; r < rows; r++)
            {
                tokens += lengths[start + r];
            }

            padded += (long)rows * width;
            batches++;
        }

        return new EncodeWork(tokens, padded, batches);
    }

    /// <summary>
    /// Diagnostic: encodes as the server's batcher would if it only ever saw <paramref name="windowTexts"/> texts at a
    /// time (one client's call): each window sorted on its own and cut by a padded-token budget, at most
    /// <paramref name="maxBatchSize"/> texts a batch. Compared with <see cref="Encode"/> it isolates what the batching
    /// policy costs, with no gRPC, engine or storage in the way.
    /// </summary>
    public EncodeWork EncodeInWindows(IReadOnlyList<string> texts, Span<float> output, int windowTexts, int tokenBudget, int maxBatchSize)
    {
        long tokens = 0, padded = 0;
        var batches = 0;
        Span<long> ids = stackalloc long[_maxTokens];
        Span<long> mask = stackalloc long[_maxTokens];
        for (var first = 0; first < texts.Count; first += windowTexts)
        {
            var count = Math.Min(windowTexts, texts.Count - first);
            var tokenized = new long[count][];
            var lengths = new int[count];
            for (var i = 0; i < count; i++)
            {
                var length = _tokenizer.Encode(texts[first + i], ids, mask);
                tokenized[i] = ids[..length].ToArray();
                lengths[i] = length;
            }

            var window = output.Slice(first * Dims, count * Dims);
            foreach (var batch in BatchPlanner.Plan(lengths, tokenBudget, maxBatchSize))
            {
                var width = lengths[batch[^1]];
                RunBatch(tokenized, batch, width, window);
                foreach (var member in batch)
                {
                    tokens += lengths[member];
                }

                padded += (long)batch.Length * width;
                batches++;
            }
        }

        return new EncodeWork(tokens, padded, batches);
    }

    /// <summary>Token counts (special tokens included, after truncation), for reporting the corpus.</summary>
    public int[] CountTokens(IReadOnlyList<string> texts)
    {
        var counts = new int[texts.Count];
        Span<long> ids = stackalloc long[_maxTokens];
        Span<long> mask = stackalloc long[_maxTokens];
        for (var i = 0; i < texts.Count; i++)
        {
            counts[i] = _tokenizer.Encode(texts[i], ids, mask);
        }

        return counts;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _session.Dispose();
        _runOptions.Dispose();
    }

    private void RunBatch(long[][] tokenized, ReadOnlySpan<int> members, int width, Span<float> output)
    {
        var rows = members.Length;
        var cells = rows * width;
        var ids = new long[cells];
        var mask = new long[cells];
        for (var r = 0; r < rows; r++)
        {
            var text = tokenized[members[r]];
            text.CopyTo(ids, r * width);
            mask.AsSpan(r * width, text.Length).Fill(1);
        }

        long[] shape = [rows, width];
        using var idsValue = OrtValue.CreateTensorValueFromMemory(ids, shape);
        using var maskValue = OrtValue.CreateTensorValueFromMemory(mask, shape);
        using var typesValue = OrtValue.CreateTensorValueFromMemory(new long[cells], shape);
        var inputs = new List<OrtValue>(3);
        foreach (var name in _inputNames)
        {
            inputs.Add(name switch
            {
                "input_ids" => idsValue,
                "attention_mask" => maskValue,
                _ => typesValue,
            });
        }

        using var results = _session.Run(_runOptions, _inputNames, inputs, _outputNames);
        var hidden = results[0].GetTensorDataAsSpan<float>();
        var dims = Dims;
        for (var r = 0; r < rows; r++)
        {
            // Mean over the real tokens (the mask is a prefix of ones), then L2 normalisation, as sentence-transformers does.
            var length = tokenized[members[r]].Length;
            var row = output.Slice(members[r] * dims, dims);
            var tokens = hidden.Slice(r * width * dims, width * dims);
            tokens[..dims].CopyTo(row);
            for (var t = 1; t < length; t++)
            {
                TensorPrimitives.Add(row, tokens.Slice(t * dims, dims), row);
            }

            TensorPrimitives.Divide(row, length, row);
            TensorPrimitives.Divide(row, MathF.Max(TensorPrimitives.Norm(row), 1e-12f), row);
        }
    }
}
