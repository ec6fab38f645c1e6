using EmbeddingCache.Engine;

namespace EmbeddingCache.Server.Hosting;

/// <summary>
/// Settings of the server around the engine; bound from the "EmbeddingCache" configuration section
/// (appsettings.json, EmbeddingCache__X environment variables, --EmbeddingCache:X=... switches).
/// </summary>
public sealed class ServerOptions
{
    /// <summary>The configuration section both these options and <see cref="EngineOptions"/> are read from.</summary>
    public const string Section = "EmbeddingCache";

    /// <summary>Largest request message accepted, in bytes (a Put of 10,000 x 384 float32 is about 15 MiB).</summary>
    public int MaxReceiveMessageBytes { get; set; } = 256 * 1024 * 1024;
}
