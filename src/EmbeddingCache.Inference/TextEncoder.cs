using System.Buffers;
using System.Diagnostics;
using System.Numerics.Tensors;
using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;

namespace EmbeddingCache.Inference;

/// <summary>
/// One model's ONNX Runtime session and tokenizer: turns texts into sentence vectors exactly as
/// sentence-transformers does (token ids checked against Hugging Face, pooling and normalisation as configured).
/// Thread-safe; one instance per model is enough.
/// </summary>
public sealed class TextEncoder : IDisposable
{
    private const string InputIdsName = "input_ids";
    private const string AttentionMaskName = "attention_mask";
    private const string TokenTypeIdsName = "token_type_ids";

    // Token-level outputs, pooled here as the folder says; the first present wins. Without pooling settings only an output
    // named sentence_embedding is taken, never another 2-D one: BERT exports also carry a tanh "pooler_output" that is not
    // the sentence vector.
    private static readonly string[] TokenOutputNames = ["last_hidden_state", "token_embeddings"];
    private const string SentenceOutputName = "sentence_embedding";

    private readonly InferenceSession _session;
    private readonly RunOptions _runOptions;
    private readonly WordPieceTokenizer _tokenizer;
    private readonly EncoderOptions _options;
    private readonly string[] _inputNames;
    private readonly bool _feedsTokenTypes;
    private readonly string[] _outputNames;
    private readonly bool _outputIsPooled;
    private readonly int _outputDims;
    private long _tokens;
    private long _paddedTokens;
    private volatile bool _disposed;

    private TextEncoder(ModelDefinition model, InferenceSession session, WordPieceTokenizer tokenizer, EncoderOptions options, string[] inputNames, string outputName, bool outputIsPooled, int outputDims)
    {
        Model = model;
        _session = session;
        _runOptions = new RunOptions();
        _tokenizer = tokenizer;
        _options = options;
        _inputNames = inputNames;
        _feedsTokenTypes = inputNames.Length == 3;
        _outputNames = [outputName];
        _outputIsPooled = outputIsPooled;
        _outputDims = outputDims;
    }

    /// <summary>The model folder this encoder runs.</summary>
    public ModelDefinition Model { get; }

    /// <summary>
    /// The width of the sentence vectors: the last Dense module's out_features, else the model's output width (from its
    /// shape, or a trial run when it is symbolic).
    /// </summary>
    public int Dims => Model.Settings.Dense.Count > 0 ? Model.Settings.Dense[^1].OutFeatures : _outputDims;

    /// <summary>The most tokens a text is given, [CLS] and [SEP] included.</summary>
    public int MaxTokens => _tokenizer.MaxTokens;

    /// <summary>Real tokens (no padding) encoded so far.</summary>
    public long TokensEncoded => Interlocked.Read(ref _tokens);

    /// <summary>Token positions run through the model so far, padding included; with <see cref="TokensEncoded"/> it shows the padding waste.</summary>
    public long PaddedTokensEncoded => Interlocked.Read(ref _paddedTokens);

    /// <summary>Opens the model's ONNX session and tokenizer.</summary>
    /// <exception cref="ModelFolderException">The ONNX file or the tokenizer cannot be used; the message names the file.</exception>
    public static TextEncoder Load(ModelDefinition model, EncoderOptions options, ILoggerFactory loggerFactory) =>
        Load(model, options, loggerFactory, tuneSession: null);

    /// <summary>As <see cref="Load(ModelDefinition, EncoderOptions, ILoggerFactory)"/>, with the session options changed last: the onnx benchmark measures variants this way.</summary>
    internal static TextEncoder Load(ModelDefinition model, EncoderOptions options, ILoggerFactory loggerFactory, Action<SessionOptions>? tuneSession)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        options.Validate();
        var started = Stopwatch.GetTimestamp();
        var tokenizer = WordPieceTokenizer.Load(model);

        // Measured with the benchmarks' onnx verb (benchmarks/results/onnx-settings.md): these beat one thread,
        // EXTENDED/BASIC optimisation, no arena, no memory pattern and parallel execution; spinning off is faster
        // next to busy request threads.
        var threads = options.EffectiveIntraOpThreads;
        InferenceSession session;
        using (var sessionOptions = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            IntraOpNumThreads = threads,
            InterOpNumThreads = 1,
            EnableCpuMemArena = true,
        })
        {
            sessionOptions.AddSessionConfigEntry("session.intra_op.allow_spinning", options.IntraOpSpinning ? "1" : "0");
            tuneSession?.Invoke(sessionOptions);
            try
            {
                session = new InferenceSession(model.OnnxPath, sessionOptions);
            }
            catch (Exception e) when (e is OnnxRuntimeException or IOException or UnauthorizedAccessException)
            {
                throw new ModelFolderException($"'{model.OnnxPath}' is not a model ONNX Runtime can load: {e.Message}", model.OnnxPath, e);
            }
        }

        TextEncoder? encoder = null;
        try
        {
            var inputNames = ChooseInputs(session, model);
            var (outputName, outputIsPooled, declaredDims) = ChooseOutput(session, model);
            var outputDims = declaredDims > 0 ? declaredDims : DiscoverDims(session, tokenizer, inputNames, outputName);
            encoder = new TextEncoder(model, session, tokenizer, options, inputNames, outputName, outputIsPooled, outputDims);
            if (model.Settings.Dense.Count > 0 && model.Settings.Dense[0].InFeatures != outputDims)
            {
                var dense = model.Settings.Dense[0];
                throw new ModelFolderException(
                    $"'{Path.Combine(model.Directory, dense.Folder, ModelDefinition.ModuleConfigFileName)}' has in_features {dense.InFeatures}, but '{model.OnnxPath}' gives {outputDims}-wide vectors.",
                    Path.Combine(model.Directory, dense.Folder, ModelDefinition.ModuleConfigFileName));
            }

            if (model.Settings.Dims is int stated && stated != encoder.Dims)
            {
                throw new ModelFolderException(
                    $"Model folder '{model.Directory}' states {stated} dims but '{model.OnnxPath}' produces {encoder.Dims}.",
                    Path.Combine(model.Directory, ModelDefinition.ManifestFileName));
            }

            InferenceLog.ModelLoaded(
                loggerFactory.CreateLogger<TextEncoder>(), model.Name, encoder.Dims, string.Join(", ", inputNames), outputName,
                model.Settings.PoolingName, DescribeModules(model.Settings), model.Settings.MaxTokens, options.EffectiveConcurrentBatches, threads, (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            return encoder;
        }
        catch
        {
            if (encoder is null)
            {
                session.Dispose();
            }
            else
            {
                encoder.Dispose();
            }

            throw;
        }
    }

    /// <summary>The number of tokens the model sees for <paramref name="text"/>: special tokens included, after truncation.</summary>
    public int CountTokens(string text)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _tokenizer.Count(text);
    }

    /// <summary>
    /// Encodes a short text and one of <see cref="MaxTokens"/> tokens, so that ONNX Runtime has planned its memory
    /// before the first real request, and so that a max tokens setting the model cannot take (past its position
    /// embeddings) fails here, naming the setting, instead of failing every batch with a long text in it.
    /// </summary>
    /// <exception cref="ModelFolderException">The model rejects an input of <see cref="MaxTokens"/> tokens.</exception>
    public void Warmup()
    {
        var vectors = new float[2 * Dims];
        var longest = string.Concat(Enumerable.Repeat("warm ", MaxTokens));
        try
        {
            Encode(["warm-up", longest], vectors);
        }
        catch (OnnxRuntimeException e)
        {
            throw new ModelFolderException(
                $"'{Model.OnnxPath}' fails on an input of {MaxTokens} tokens; lower max_tokens in '{Path.Combine(Model.Directory, ModelDefinition.ManifestFileName)}': {e.Message}",
                Path.Combine(Model.Directory, ModelDefinition.ManifestFileName),
                e);
        }
    }

    /// <summary>
    /// Encodes <paramref name="texts"/>, the exact tokenizer inputs (any prefix already applied), into
    /// <paramref name="output"/>: <c>texts.Count * Dims</c> floats, row-major, in input order, pooled and
    /// L2-normalised as the model's settings say. Texts are sorted by length and run in batches that respect
    /// <see cref="EncoderOptions.TokenBudget"/>.
    /// </summary>
    public void Encode(IReadOnlyList<string> texts, Span<float> output)
    {
        ArgumentNullException.ThrowIfNull(texts);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (output.Length < texts.Count * Dims)
        {
            throw new ArgumentException($"Needs {texts.Count * Dims} floats for {texts.Count} texts of {Dims} dims; got {output.Length}.", nameof(output));
        }

        var count = texts.Count;
        if (count == 0)
        {
            return;
        }

        var tokenized = new TokenizedText[count];
        var lengths = new int[count];
        for (var i = 0; i < count; i++)
        {
            tokenized[i] = Tokenize(texts[i]);
            lengths[i] = tokenized[i].Length;
        }

        var batches = BatchPlanner.Plan(lengths, _options.TokenBudget, _options.MaxBatchSize);
        var batch = ArrayPool<TokenizedText>.Shared.Rent(Math.Min(count, _options.MaxBatchSize));
        var rows = ArrayPool<float>.Shared.Rent(Math.Min(count, _options.MaxBatchSize) * Dims);
        try
        {
            foreach (var members in batches)
            {
                for (var i = 0; i < members.Length; i++)
                {
                    batch[i] = tokenized[members[i]];
                }

                EncodeBatch(batch.AsSpan(0, members.Length), rows.AsSpan(0, members.Length * Dims));
                for (var i = 0; i < members.Length; i++)
                {
                    rows.AsSpan(i * Dims, Dims).CopyTo(output.Slice(members[i] * Dims, Dims));
                }
            }
        }
        finally
        {
            Array.Clear(batch);
            ArrayPool<TokenizedText>.Shared.Return(batch);
            ArrayPool<float>.Shared.Return(rows);
        }
    }

    /// <summary>Releases the ONNX Runtime session. Calls still running must have finished.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _session.Dispose();
        _runOptions.Dispose();
    }

    internal TokenizedText Tokenize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return TokenizedText.Create(_tokenizer, text);
    }

    /// <summary>Tokenizes into <paramref name="ids"/> (room for <see cref="MaxTokens"/>); for tests and tools.</summary>
    internal int Tokenize(string text, Span<long> ids) => _tokenizer.Tokenize(text, ids);

    /// <summary>
    /// Runs one batch through the model, padded to its longest member, and writes the pooled rows in batch order
    /// to <paramref name="output"/> (<c>batch.Length * Dims</c> floats).
    /// </summary>
    internal void EncodeBatch(ReadOnlySpan<TokenizedText> batch, Span<float> output)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var rows = batch.Length;
        var width = 0;
        long realTokens = 0;
        foreach (var text in batch)
        {
            width = Math.Max(width, text.Length);
            realTokens += text.Length;
        }

        var cells = rows * width;
        var ids = ArrayPool<long>.Shared.Rent(cells);
        var mask = ArrayPool<long>.Shared.Rent(cells);
        var types = _feedsTokenTypes ? ArrayPool<long>.Shared.Rent(cells) : null;
        var outputLength = _outputIsPooled ? rows * _outputDims : cells * _outputDims;
        var hidden = ArrayPool<float>.Shared.Rent(outputLength);
        try
        {
            for (var r = 0; r < rows; r++)
            {
                var tokens = batch[r].Ids;
                var idRow = ids.AsSpan(r * width, width);
                for (var t = 0; t < tokens.Length; t++)
                {
                    idRow[t] = tokens[t];
                }

                idRow.Slice(tokens.Length).Fill(_tokenizer.PadId);
                var maskRow = mask.AsSpan(r * width, width);
                maskRow.Slice(0, tokens.Length).Fill(1);
                maskRow.Slice(tokens.Length).Fill(0);
            }

            types?.AsSpan(0, cells).Clear();
            long[] inputShape = [rows, width];
            long[] outputShape = _outputIsPooled ? [rows, _outputDims] : [rows, width, _outputDims];
            using (var idsValue = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, ids.AsMemory(0, cells), inputShape))
            using (var maskValue = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, mask.AsMemory(0, cells), inputShape))
            using (var typesValue = types is null ? null : OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, types.AsMemory(0, cells), inputShape))
            using (var outputValue = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, hidden.AsMemory(0, outputLength), outputShape))
            {
                OrtValue[] inputs = typesValue is null ? [idsValue, maskValue] : [idsValue, maskValue, typesValue];
                _session.Run(_runOptions, _inputNames, inputs, _outputNames, [outputValue]);
            }

            Pool(hidden.AsSpan(0, outputLength), batch, width, output);
            Interlocked.Add(ref _tokens, realTokens);
            Interlocked.Add(ref _paddedTokens, cells);
        }
        finally
        {
            ArrayPool<long>.Shared.Return(ids);
            ArrayPool<long>.Shared.Return(mask);
            if (types is not null)
            {
                ArrayPool<long>.Shared.Return(types);
            }

            ArrayPool<float>.Shared.Return(hidden);
        }
    }

    /// <summary>What follows pooling, for the log: e.g. <c>2_Dense 384->256 tanh, normalize</c>.</summary>
    private static string DescribeModules(ModelSettings settings) =>
        string.Join(", ", settings.Dense.Select(dense => dense.ToString()).Append(settings.Normalize ? "normalize" : "no normalization"));

    /// <summary>The module stack after the graph: pooling (unless the graph pooled), the Dense modules, normalisation.</summary>
    private void Pool(ReadOnlySpan<float> hidden, ReadOnlySpan<TokenizedText> batch, int width, Span<float> output)
    {
        var settings = Model.Settings;
        var widest = Math.Max(_outputDims, settings.Dense.Count == 0 ? 0 : settings.Dense.Max(dense => dense.OutFeatures));
        var scratch = ArrayPool<float>.Shared.Rent(2 * widest);
        try
        {
            for (var r = 0; r < batch.Length; r++)
            {
                // Each step reads one half of the scratch and writes the other.
                var current = scratch.AsSpan(0, _outputDims);
                if (_outputIsPooled)
                {
                    hidden.Slice(r * _outputDims, _outputDims).CopyTo(current);
                }
                else
                {
                    TokenPooling.Pool(settings.Pooling!.Value, hidden.Slice(r * width * _outputDims, width * _outputDims), batch[r].Length, current);
                }

                var offset = 0;
                foreach (var dense in settings.Dense)
                {
                    offset = widest - offset;
                    var next = scratch.AsSpan(offset, dense.OutFeatures);
                    dense.Apply(current, next);
                    current = next;
                }

                var row = output.Slice(r * Dims, Dims);
                current.CopyTo(row);
                if (settings.Normalize)
                {
                    // As torch.nn.functional.normalize: a zero vector stays zero instead of becoming NaN.
                    var norm = TensorPrimitives.Norm(row);
                    TensorPrimitives.Divide(row, MathF.Max(norm, 1e-12f), row);
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(scratch);
        }
    }

    private static int DiscoverDims(InferenceSession session, WordPieceTokenizer tokenizer, string[] inputNames, string outputName)
    {
        Span<long> tokens = stackalloc long[tokenizer.MaxTokens];
        var length = tokenizer.Tokenize("dims", tokens);
        long[] ids = tokens.Slice(0, length).ToArray();
        var mask = new long[length];
        Array.Fill(mask, 1L);
        long[] shape = [1, length];
        using var runOptions = new RunOptions();
        using var idsValue = OrtValue.CreateTensorValueFromMemory(ids, shape);
        using var maskValue = OrtValue.CreateTensorValueFromMemory(mask, shape);
        using var typesValue = inputNames.Length == 3 ? OrtValue.CreateTensorValueFromMemory(new long[length], shape) : null;
        OrtValue[] inputs = typesValue is null ? [idsValue, maskValue] : [idsValue, maskValue, typesValue];
        using var results = session.Run(runOptions, inputNames, inputs, [outputName]);
        var dims = results[0].GetTensorTypeAndShape().Shape;
        return checked((int)dims[^1]);
    }

    private static string[] ChooseInputs(InferenceSession session, ModelDefinition model)
    {
        var declared = session.InputMetadata;
        foreach (var required in new[] { InputIdsName, AttentionMaskName })
        {
            if (!declared.ContainsKey(required))
            {
                throw new ModelFolderException(
                    $"'{model.OnnxPath}' has no '{required}' input (it has {string.Join(", ", declared.Keys)}); a BERT-style encoder export is expected.",
                    model.OnnxPath);
            }
        }

        var unknown = declared.Keys.Where(name => name is not (InputIdsName or AttentionMaskName or TokenTypeIdsName)).ToArray();
        if (unknown.Length > 0)
        {
            throw new ModelFolderException($"'{model.OnnxPath}' asks for inputs this server cannot feed: {string.Join(", ", unknown)}.", model.OnnxPath);
        }

        foreach (var (name, metadata) in declared)
        {
            if (metadata.ElementType != typeof(long))
            {
                throw new ModelFolderException($"'{model.OnnxPath}' declares input '{name}' as {metadata.ElementType.Name}; int64 is expected.", model.OnnxPath);
            }
        }

        return declared.ContainsKey(TokenTypeIdsName) ? [InputIdsName, AttentionMaskName, TokenTypeIdsName] : [InputIdsName, AttentionMaskName];
    }

    private static (string Name, bool IsPooled, int Dims) ChooseOutput(InferenceSession session, ModelDefinition model)
    {
        var declared = session.OutputMetadata;
        if (model.Settings.Pooling is null)
        {
            // Nothing says how to pool: only the graph's own sentence vector will do, used as it is.
            if (declared.TryGetValue(SentenceOutputName, out var pooled) && pooled.Dimensions.Length == 2)
            {
                return Describe(SentenceOutputName, pooled);
            }

            throw new ModelFolderException(
                $"Model folder '{model.Directory}' does not say how to pool the token vectors of '{model.OnnxPath}' (outputs {string.Join(", ", declared.Keys)}; " +
                $"no modules.json with a Pooling module, no {ModelDefinition.DefaultPoolingFolder}/{ModelDefinition.ModuleConfigFileName}, no [batch, dims] '{SentenceOutputName}' output): " +
                $"set \"pooling\" in '{Path.Combine(model.Directory, ModelDefinition.ManifestFileName)}' to the model's pooling ({ModelSettingsReader.PoolingNames}), as its model card says.",
                Path.Combine(model.Directory, ModelDefinition.ManifestFileName));
        }

        foreach (var name in TokenOutputNames)
        {
            if (declared.TryGetValue(name, out var metadata))
            {
                return Describe(name, metadata);
            }
        }

        // An export with other names: take its first [batch, seq, dims] output.
        foreach (var (name, metadata) in declared)
        {
            if (metadata.Dimensions.Length == 3)
            {
                return Describe(name, metadata);
            }
        }

        throw new ModelFolderException(
            $"'{model.OnnxPath}' has no token-level output such as last_hidden_state to pool as '{model.Settings.PoolingName}' (it has {string.Join(", ", declared.Keys)}).",
            model.OnnxPath);

        (string, bool, int) Describe(string name, NodeMetadata metadata)
        {
            if (metadata.ElementType != typeof(float) || metadata.Dimensions.Length is not (2 or 3))
            {
                throw new ModelFolderException(
                    $"'{model.OnnxPath}' output '{name}' is {metadata.ElementType.Name}[{string.Join(", ", metadata.Dimensions)}]; float32 [batch, seq, dims] or [batch, dims] is expected.",
                    model.OnnxPath);
            }

            return (name, metadata.Dimensions.Length == 2, metadata.Dimensions[^1]);
        }
    }
}
