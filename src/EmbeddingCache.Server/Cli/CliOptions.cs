using System.CommandLine;
using EmbeddingCache.Protocol.V1;

namespace EmbeddingCache.Server.Cli;

/// <summary>The options several verbs share, defined once.</summary>
internal static class CliOptions
{
    public static Option<string> Server() => new("--server")
    {
        Description = "The running server to talk to.",
        DefaultValueFactory = _ => "http://127.0.0.1:50051",
    };

    public static Option<string?> Artifacts() => new("--artifacts")
    {
        Description = "Work on this artifacts root directly, without a server (fails if a server holds it).",
    };

    public static Option<string> Model() => new("--model", "-m")
    {
        Description = "The model.",
        DefaultValueFactory = _ => "all-MiniLM-L6-v2",
    };

    public static Option<string> Kind(string defaultKind) => new Option<string>("--kind", "-k")
    {
        Description = "query or document.",
        DefaultValueFactory = _ => defaultKind,
    }.AcceptOnlyFromAmong("query", "document");

    public static Kind ToWire(string kind) => kind == "query" ? Protocol.V1.Kind.Query : Protocol.V1.Kind.Document;

    /// <summary>The server's message, not a stack trace, when a call fails.</summary>
    public static int Fail(string message)
    {
        Console.Error.WriteLine($"embcache: {message}");
        return 1;
    }
}
