using System.CommandLine;
using EmbeddingCache.Server.Hosting;

namespace EmbeddingCache.Server.Cli;

/// <summary>
/// The embcache executable: <c>serve</c> (the default: with no verb, or options only, it serves) and the
/// admin and bulk verbs a researcher expects, each with <c>--help</c>.
/// </summary>
public static class EmbcacheCommandLine
{
    private static readonly string[] HelpTokens = ["-h", "--help", "-?", "--version"];

    /// <summary>Runs the verb named in <paramref name="args"/>; returns the process exit code.</summary>
    public static async Task<int> RunAsync(string[] args)
    {
        // Options alone (--urls, --artifacts, --EmbeddingCache:X=Y) go to the server as ASP.NET Core reads them.
        if (args.Length == 0 || (args[0].StartsWith('-') && !HelpTokens.Contains(args[0])))
        {
            return await ServerHost.RunAsync(args).ConfigureAwait(false);
        }

        var root = new RootCommand("EmbeddingCache: exact text embeddings over gRPC, cached in files numpy opens.")
        {
            ServeVerb(),
            ModelVerbs.Models(),
            ModelVerbs.Stats(),
            ModelVerbs.Invalidate(),
            WarmVerb.Create(),
            FileVerbs.Export(),
            FileVerbs.Import(),
            FileVerbs.Verify(),
        };
        foreach (var verb in root.Subcommands.Where(verb => verb.Arguments.Any(argument => argument.Name == "model")))
        {
            // The old `warm CORPUS --model M`: say what the grammar is rather than only that a token is unknown.
            verb.Validators.Add(result =>
            {
                if (result.Tokens.Any(token => token.Value is "--model" or "-m"))
                {
                    result.AddError($"every verb names its model as its first argument: embcache {verb.Name} MODEL ... (there is no --model)");
                }
            });
        }
        return await root.Parse(args).InvokeAsync().ConfigureAwait(false);
    }

    private static Command ServeVerb()
    {
        var serve = new Command("serve", "Serve gRPC (the default verb). Options are read the ASP.NET Core way, e.g. " +
                                         "--EmbeddingCache:Storage:SegmentRows=131072; appsettings.json and EmbeddingCache__* environment variables work too.")
        {
            TreatUnmatchedTokensAsErrors = false,
        };
        serve.Options.Add(new Option<string>("--urls") { Description = $"Where to listen (default {ServerHost.DefaultUrl}; loopback only unless you say otherwise)." });
        serve.Options.Add(new Option<string>("--artifacts") { Description = $"The artifacts root (default ./{CliOptions.DefaultArtifactsDirectory})." });
        serve.Options.Add(new Option<bool>(ServerHost.FollowSwitch)
        {
            Description = "Serve the artifacts root read-only, following the server that writes it (same disk, or a synced copy): " +
                          "no lock, no file written; writes are refused naming EmbeddingCache:Follow:WriterAddress.",
        });
        serve.SetAction((parse, _) => ServerHost.RunAsync([.. parse.Tokens.Select(t => t.Value).Skip(1)]));
        return serve;
    }
}
