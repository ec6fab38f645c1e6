using EmbeddingCache.Engine;

namespace EmbeddingCache.Server.Cli;

/// <summary>
/// The cache engine run inside a verb on <c>--artifacts DIR</c> (taking the root's writer lock, so it fails if a
/// server holds it), logging warnings to the console; one owner disposes both.
/// </summary>
internal sealed class LocalEngine : IAsyncDisposable
{
    private readonly ILoggerFactory logging;

    private LocalEngine(string root)
    {
        logging = LoggerFactory.Create(builder => builder.AddSimpleConsole().SetMinimumLevel(LogLevel.Warning));
        Engine = EmbeddingCacheEngine.Open(new EngineOptions { ArtifactsDirectory = root, PreloadModels = [] }, logging);
    }

    public EmbeddingCacheEngine Engine { get; }

    public static LocalEngine Open(string root) => new(root);

    public async ValueTask DisposeAsync()
    {
        await Engine.DisposeAsync();
        logging.Dispose();
    }
}
