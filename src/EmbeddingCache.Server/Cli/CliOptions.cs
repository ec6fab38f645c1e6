using System.CommandLine;
using EmbeddingCache.Engine;
using EmbeddingCache.Protocol.V1;
using EmbeddingCache.Server.Hosting;
using EmbeddingCache.Storage;

namespace EmbeddingCache.Server.Cli;

/// <summary>
/// The grammar every verb shares, defined once: the model is the first positional argument of every verb that
/// works on one model; <c>--server URL</c> is the running server a verb talks to; <c>--artifacts DIR</c> is the
/// artifacts root a verb works on directly, in this process, writing its logs (if any) under <c>DIR/logs/</c>.
/// </summary>
internal static class CliOptions
{
    /// <summary>The artifacts root the server uses when none is configured, defined once on <see cref="EngineOptions"/>.</summary>
    public static string DefaultArtifactsDirectory { get; } = new EngineOptions().ArtifactsDirectory;

    /// <summary>The environment variable that sets <c>--server</c>'s default, e.g. for every verb of a session on a cluster.</summary>
    public const string ServerVariable = "EMBCACHE_SERVER";

    public static Argument<string> Model(string description) => new("model") { Description = description };

    public static Option<string> Server() => new("--server")
    {
        Description = $"The running server to talk to (default ${ServerVariable}, else {ServerHost.DefaultUrl}).",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable(ServerVariable) is { Length: > 0 } address ? address : ServerHost.DefaultUrl,
    };

    /// <summary><c>--artifacts</c> for the verbs that work through a server unless it is given.</summary>
    public static Option<string?> Artifacts() => new("--artifacts")
    {
        Description = "Work on this artifacts root directly, in this process, instead of through a server (fails if a server holds it).",
    };

    /// <summary><c>--artifacts</c> for the verbs that only read the files (safe next to a running server).</summary>
    public static Option<string> ArtifactsRoot() => new("--artifacts")
    {
        Description = "The artifacts root, read directly (a running server may hold it).",
        DefaultValueFactory = _ => DefaultArtifactsDirectory,
    };

    /// <summary>The root to work on directly, or null to go through <paramref name="server"/>; null and an error when both are given.</summary>
    public static string? DirectRoot(ParseResult parse, Option<string> server, Option<string?> artifacts, out string? error)
    {
        var root = parse.GetValue(artifacts);
        error = root is not null && parse.GetResult(server) is { Implicit: false }
            ? "give --server (work through a running server) or --artifacts (work on the root directly), not both"
            : null;
        return root;
    }

    public static Option<string> Kind(string defaultKind) => new Option<string>("--kind", "-k")
    {
        Description = "query or document.",
        DefaultValueFactory = _ => defaultKind,
    }.AcceptOnlyFromAmong([.. VectorKindNames.All]);

    public static Kind ToWire(string kind) => ToWire(ToKind(kind));

    public static VectorKind ToKind(string kind) => VectorKindNames.Parse(kind);

    public static Kind ToWire(VectorKind kind) => kind == VectorKind.Query ? Protocol.V1.Kind.Query : Protocol.V1.Kind.Document;

    /// <summary>The server's message, not a stack trace, when a call fails.</summary>
    public static int Fail(string message)
    {
        Console.Error.WriteLine($"embcache: {message}");
        return 1;
    }
}
