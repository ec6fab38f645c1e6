using EmbeddingCache.Engine;

namespace EmbeddingCache.Server.Hosting;

/// <summary>
/// Settings of the server around the engine; bound from the "EmbeddingCache" configuration section
/// (appsettings.json, EmbeddingCache__X environment variables, --EmbeddingCache:X=... switches).
/// </summary>
public sealed class ServerOptions
{
    /// <summary>The configuration section both these options and <see cref="EngineOptions"/> are read from.</summary>
    public const string Section = EngineOptions.Section;

    /// <summary>HTTP/2's initial stream window, the smallest a peer may announce.</summary>
    public const int MinHttp2StreamWindowBytes = 65_535;

    /// <summary>Largest request message accepted, in bytes (a Put of 10,000 x 384 float32 is about 15 MiB).</summary>
    public int MaxReceiveMessageBytes { get; set; } = 256 * 1024 * 1024;

    /// <summary>
    /// Bytes a client may send on one call before the server grants more (the HTTP/2 stream window). 65,535 by
    /// default, HTTP/2's own initial window: a message over <see cref="MaxReceiveMessageBytes"/> is refused from its
    /// header, yet what is already in flight must still be read and dropped, so a small window keeps a flood of
    /// oversize messages cheap. Raise it (Kestrel's default is 786,432) for large Puts over long-latency links.
    /// </summary>
    public int Http2StreamWindowBytes { get; set; } = MinHttp2StreamWindowBytes;

    /// <summary>
    /// Port of the Prometheus endpoint (http://127.0.0.1:PORT/metrics), apart from gRPC, e.g. 9464. Default 0: off,
    /// so that several servers on one machine never contend for a port nobody asked for.
    /// </summary>
    public int MetricsPort { get; set; }

    /// <summary>
    /// Port of the OpenAI-compatible endpoint (http://127.0.0.1:PORT/v1/embeddings and /v1/models, HTTP/1.1), apart
    /// from gRPC, whose cleartext HTTP/2 OpenAI's clients cannot speak. Default 0: off. It serves the same cache under
    /// the same limits and <see cref="ApiKey"/>.
    /// </summary>
    public int OpenAiPort { get; set; }

    /// <summary>
    /// When set, every EmbeddingCache call must send <c>authorization: Bearer &lt;ApiKey&gt;</c>. Unset by default:
    /// the server listens on loopback only. Set it (and use TLS) before listening on any other address.
    /// </summary>
    public string? ApiKey { get; set; }

    /// <summary>
    /// Refused calls (bad arguments, over a limit, unknown model, wrong API key) one connection may make per second
    /// before its further refusals are answered only after <see cref="RefusalBrake"/>. 50 by default, far above what
    /// a client with a bug makes; 0 turns the brake off. A flooder that waits for its replies is slowed to a trickle,
    /// so good clients keep the CPU (flood benchmark).
    /// </summary>
    public int RefusalsPerSecond { get; set; } = 50;

    /// <summary>How long a braked refusal waits before it is sent: 100 ms by default. It holds no thread.</summary>
    public TimeSpan RefusalBrake { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// Every setting out of range, each as "<c>EmbeddingCache:Setting is value; it must be …</c>", so that a person
    /// reading it knows which setting to change and to what. Empty when the options are usable.
    /// </summary>
    public IEnumerable<string> Problems()
    {
        if (MaxReceiveMessageBytes < 1)
        {
            yield return $"{EngineOptions.SettingName(nameof(MaxReceiveMessageBytes))} is {MaxReceiveMessageBytes}; it must be at least 1";
        }
        if (Http2StreamWindowBytes < MinHttp2StreamWindowBytes)
        {
            yield return $"{EngineOptions.SettingName(nameof(Http2StreamWindowBytes))} is {Http2StreamWindowBytes}; it must be at least {MinHttp2StreamWindowBytes} (HTTP/2's minimum)";
        }
        if (MetricsPort is < 0 or > ushort.MaxValue)
        {
            yield return $"{EngineOptions.SettingName(nameof(MetricsPort))} is {MetricsPort}; it must be a port number, 1 to {ushort.MaxValue}, or 0 (off)";
        }
        if (OpenAiPort is < 0 or > ushort.MaxValue)
        {
            yield return $"{EngineOptions.SettingName(nameof(OpenAiPort))} is {OpenAiPort}; it must be a port number, 1 to {ushort.MaxValue}, or 0 (off)";
        }
        if (RefusalBrake < TimeSpan.Zero)
        {
            yield return $"{EngineOptions.SettingName(nameof(RefusalBrake))} is {RefusalBrake}; it must not be negative";
        }
    }
}
