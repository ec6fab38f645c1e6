namespace EmbeddingCache.Inference;

/// <summary>
/// Everything besides the ONNX file and the vocabulary that decides which vector a text gets.
/// The defaults are those of all-MiniLM-L6-v2, the most common sentence-transformers model, except pooling, which a folder must state.
/// </summary>
public sealed class ModelSettings
{
    /// <summary>
    /// The most tokens a folder may ask for: 32,768, beyond every BERT-family encoder's position table. A larger
    /// number in a settings file is a mistake, and honouring it would size each text's token buffer by it.
    /// </summary>
    public const int MaxTokensLimit = 32_768;

    /// <summary>The widest vector a folder may state: 65,536, as for the cache's files.</summary>
    public const int MaxDims = 65_536;

    /// <summary>
    /// How token vectors are pooled into the sentence vector, from the Pooling module's config or manifest.json's
    /// <c>pooling</c>. Null (the default) when the folder says nothing: the graph must then output a pooled
    /// <c>sentence_embedding</c>, used as it is, or the model is refused; a pooling is never guessed.
    /// </summary>
    public PoolingMode? Pooling { get; init; }

    /// <summary>The pooling as ListModels and the log show it: its manifest.json name, or <c>sentence_embedding output</c>.</summary>
    public string PoolingName => Pooling is { } mode ? ModelSettingsReader.NameOf(mode) : "sentence_embedding output";

    /// <summary>The Dense modules that follow pooling, in modules.json order; none by default.</summary>
    public IReadOnlyList<DenseLayer> Dense { get; init; } = [];

    /// <summary>
    /// Whether sentence vectors are L2-normalised last, so a dot product is the cosine: modules.json's Normalize module,
    /// or manifest.json's <c>normalize</c>. On by default when pooling is stated, off for a graph's own pooled output.
    /// </summary>
    public bool Normalize { get; init; } = true;

    /// <summary>How Score compares the model's vectors: config_sentence_transformers.json's <c>similarity_fn_name</c>; cosine by default.</summary>
    public SimilarityFunction Similarity { get; init; } = SimilarityFunction.Cosine;

    /// <summary>The similarity as similarity_fn_name spells it.</summary>
    public string SimilarityName => ModelSettingsReader.NameOf(Similarity);

    /// <summary>
    /// The ONNX file to serve, relative to the model folder (manifest.json's <c>onnx_file</c>, e.g. <c>onnx/model_O3.onnx</c>);
    /// looked up at the folder's root, then under <c>onnx/</c>. Null (the default) means <c>model.onnx</c>, root first.
    /// </summary>
    public string? OnnxFile { get; init; }

    /// <summary>
    /// The most tokens fed to the model per text, <c>[CLS]</c> and <c>[SEP]</c> included; longer texts are
    /// truncated to <c>[CLS]</c>, their first <c>MaxTokens - 2</c> pieces and <c>[SEP]</c>, as Hugging Face does.
    /// 256 by default (sentence-transformers' max_seq_length for all-MiniLM-L6-v2).
    /// </summary>
    public int MaxTokens { get; init; } = 256;

    /// <summary>
    /// Prepended to query texts before tokenization (e.g. arctic-embed's instruction): the <c>query</c> prompt, else the
    /// <c>default_prompt_name</c> one, as sentence-transformers' encode_query picks it. None by default.
    /// </summary>
    public string QueryPrefix { get; init; } = "";

    /// <summary>
    /// Prepended to document texts before tokenization: the <c>document</c>, <c>passage</c> or <c>corpus</c> prompt, else the
    /// <c>default_prompt_name</c> one, as encode_document picks it. None by default.
    /// </summary>
    public string DocumentPrefix { get; init; } = "";

    /// <summary>
    /// Whether the tokenizer lowercases its input (uncased BERT vocabularies, the default). Read from
    /// tokenizer_config.json <c>do_lower_case</c> when a vocab.txt is used; a tokenizer.json carries its own.
    /// </summary>
    public bool LowerCase { get; init; } = true;

    /// <summary>
    /// The vector width the model is expected to produce (after any Dense module), when the folder states it; checked at load.
    /// </summary>
    public int? Dims { get; init; }

    /// <summary>The Hugging Face model this one comes from, e.g. <c>sentence-transformers/all-MiniLM-L6-v2</c>. Informational.</summary>
    public string? BaseModel { get; init; }

    /// <summary>Where the model can be found on the Hugging Face Hub. Informational.</summary>
    public string? HuggingFaceUrl { get; init; }

    /// <summary>
    /// True when the model's cache stores vectors as float16 ('&lt;f2'): half the bytes on disk and in the page cache,
    /// about three significant digits. From manifest.json's <c>storage_dtype</c> ("float32", the default, or "float16").
    /// Not part of the fingerprint: it is how vectors are kept, not how they are made.
    /// </summary>
    public bool StoreFloat16 { get; init; }
}
