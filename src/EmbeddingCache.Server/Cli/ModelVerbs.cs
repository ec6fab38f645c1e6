using System.CommandLine;
using System.Globalization;
using EmbeddingCache.Client;
using EmbeddingCache.Engine;
using EmbeddingCache.Protocol.V1;
using Grpc.Core;
using Spectre.Console;

namespace EmbeddingCache.Server.Cli;

/// <summary><c>models</c>, <c>stats</c> and <c>invalidate</c>: what a running server holds, and dropping a model's cache.</summary>
internal static class ModelVerbs
{
    public static Command Models()
    {
        var server = CliOptions.Server();
        var command = new Command("models", "List every model the server knows: dims, whether it can compute, how its vectors are made, fingerprint, rows, bytes.") { server };
        command.SetAction((parse, cancel) => WithServer(parse.GetValue(server)!, async client =>
        {
            var table = new Table().AddColumns("model", "dims", "computes", "query rows", "document rows", "bytes", "fingerprint", "error");
            var models = await client.ListModelsAsync(cancel);
            foreach (var m in models)
            {
                table.AddRow(Markup.Escape(m.Name), N(m.Dims), m.CanCompute ? "yes" : "no", N(m.QueryRows), N(m.DocumentRows),
                    N(m.Bytes), m.Fingerprint.Length > 12 ? m.Fingerprint[..12] : m.Fingerprint, Markup.Escape(m.Error));
            }
            AnsiConsole.Write(table);
            foreach (var m in models.Where(m => m.Pooling.Length > 0)) Console.WriteLine($"{m.Name}: {MadeBy(m)}");
        }));
        return command;
    }

    /// <summary>How the server makes a model's vectors, as it read the folder:
    /// "model.onnx, mean pooling, normalized, cosine, 256 tokens, query prefix '...'".</summary>
    private static string MadeBy(ModelInfo m)
    {
        var parts = new List<string> { m.OnnxFile, $"{m.Pooling} pooling" };
        parts.AddRange(m.Dense);
        parts.Add(m.Normalize ? "normalized" : "not normalized");
        parts.Add(m.Similarity);
        parts.Add($"{m.MaxTokens} tokens");
        if (m.QueryPrefix.Length > 0) parts.Add($"query prefix '{m.QueryPrefix}'");
        if (m.DocumentPrefix.Length > 0) parts.Add($"document prefix '{m.DocumentPrefix}'");
        return string.Join(", ", parts);
    }

    public static Command Stats()
    {
        var server = CliOptions.Server();
        var command = new Command("stats", "Hits, misses and hit rate per model since the server started.") { server };
        command.SetAction((parse, cancel) => WithServer(parse.GetValue(server)!, async client =>
        {
            var table = new Table().AddColumns("model", "hits", "misses", "hit rate", "rows", "bytes");
            foreach (var m in await client.ListModelsAsync(cancel))
            {
                var lookups = m.Hits + m.Misses;
                var rate = lookups == 0 ? "-" : (m.Hits / (double)lookups).ToString("P1", CultureInfo.InvariantCulture);
                table.AddRow(Markup.Escape(m.Name), N(m.Hits), N(m.Misses), rate, N(m.QueryRows + m.DocumentRows), N(m.Bytes));
            }
            AnsiConsole.Write(table);
        }));
        return command;
    }

    public static Command Invalidate()
    {
        var model = CliOptions.Model("The model whose cache is dropped.");
        var kind = new Option<string?>("--kind", "-k") { Description = "query or document; all kinds when left out." }.AcceptOnlyFromAmong([.. Storage.VectorKindNames.All]);
        var server = CliOptions.Server();
        var artifacts = CliOptions.Artifacts();
        var command = new Command("invalidate", "Drop a model's cache (or one kind of it) atomically; the server recomputes on the next miss.")
        {
            model, kind, server, artifacts,
        };
        command.SetAction(async (parse, cancel) =>
        {
            var root = CliOptions.DirectRoot(parse, server, artifacts, out var conflict);
            if (conflict is not null) return CliOptions.Fail(conflict);
            var name = parse.GetValue(model)!;
            var which = parse.GetValue(kind);
            void Report(long rows, long bytes) => Console.WriteLine($"invalidated {name} ({which ?? "all kinds"}): {rows} rows, {bytes} bytes removed");
            if (root is null)
            {
                return await WithServer(parse.GetValue(server)!, async client =>
                {
                    var result = await client.InvalidateAsync(name, which is null ? Kind.Unspecified : CliOptions.ToWire(which), cancel);
                    Report((long)result.RowsRemoved, (long)result.BytesRemoved);
                });
            }
            try
            {
                await using var local = LocalEngine.Open(root);
                var result = await local.Engine.InvalidateAsync(name, which is null ? null : CliOptions.ToKind(which), cancel);
                Report(result.RowsRemoved, result.BytesRemoved);
                return 0;
            }
            catch (CacheRequestException e)
            {
                return CliOptions.Fail(e.Message);
            }
        });
        return command;
    }

    /// <summary>Runs <paramref name="action"/> against the server, turning a failed call into its message and exit code 1.</summary>
    public static async Task<int> WithServer(string address, Func<EmbeddingCacheClient, Task> action)
    {
        using var client = new EmbeddingCacheClient(address);
        try
        {
            await action(client);
            return 0;
        }
        catch (RpcException e)
        {
            return CliOptions.Fail($"{address}: {e.StatusCode}: {e.Status.Detail}");
        }
    }

    private static string N(ulong value) => value.ToString("N0", CultureInfo.InvariantCulture);
}
