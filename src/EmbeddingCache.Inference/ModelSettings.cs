namespace EmbeddingCache.Inference;

/// <summary>
/// Everything besides the ONNX file and the vocabulary that decides which vector a text gets.
/// The defaults are those of all-MiniLM-L6-v2, the most common sentence-transformers model.
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

    /// <summary>How token vectors are pooled into the sentence vector. Mean pooling unless the model says otherwise.</summary>
    public PoolingMode Pooling { get; init; } = PoolingMode.Mean;

    /// <summary>Whether sentence vectors are L2-normalised, so a dot product is the cosine. On by default.</summary>
    public bool Normalize { get; init; } = true;

    /// <summary>
    /// The most tokens fed to the model per text, <c>[CLS]</c> and <c>[SEP]</c> included; longer texts are
    /// truncated to <c>[CLS]</c>, their first <c>MaxTokens - 2</c> pieces and <c>[SEP]</c>, as Hugging Face does.
    /// 256 by default (sentence-transformers' max_seq_length for all-MiniLM-L6-v2).
    /// </summary>
    public int MaxTokens { get; init; } = 256;

    /// <summary>Prepended to query texts before tokenization (e.g. arctic-embed's instruction). None by default.</summary>
    public string QueryPrefix { get; init; } = "";

    /// <summary>Prepended to document texts before tokenization. None by default.</summary>
    public string DocumentPrefix { get; init; } = "";

    /// <summary>
    /// Whether the tokenizer lowercases its input (uncased BERT vocabularies, the default). Read from
    /// tokenizer_config.json <c>do_lower_case</c> when a vocab.txt is used; a tokenizer.json carries its own.
    /// </summary>
    public bool LowerCase { get; init; } = true;

    /// <summary>The vector width the model is expected to produce, when the folder states it; checked at load.</summary>
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
