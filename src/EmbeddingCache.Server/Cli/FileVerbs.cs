using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using EmbeddingCache.Engine;
using EmbeddingCache.Engine.CacheFiles;
using EmbeddingCache.Inference;
using EmbeddingCache.Protocol.V1;
using EmbeddingCache.Storage;
using Google.Protobuf;
using Grpc.Core;

namespace EmbeddingCache.Server.Cli;

/// <summary>
/// <c>export</c>, <c>import</c> and <c>verify</c>: the cache as files a researcher moves around. The work is
/// <see cref="CacheExport"/>, <see cref="NpyImport"/> and <see cref="CacheVerifier"/>; these verbs parse the command
/// line and print. Export and verify read the files directly (safe next to a running server); import goes through a
/// server or, with --artifacts, the root itself.
/// </summary>
internal static class FileVerbs
{
    public static Command Export()
    {
        var model = CliOptions.Model("The model whose cache is exported.");
        var kind = CliOptions.Kind(VectorKindNames.Document);
        var output = new Option<FileInfo>("--out", "-o") { Description = "The .npy to write; the ids go beside it as <name>.ids.json.", Required = true };
        var root = CliOptions.ArtifactsRoot();
        var command = new Command("export", "Write a model's cached vectors as one contiguous .npy (newest row per id) plus its ids, for np.load.")
        {
            model, kind, output, root,
        };
        command.SetAction(parse =>
        {
            var exported = CacheExport.Write(parse.GetValue(root)!, parse.GetValue(model)!, CliOptions.ToKind(parse.GetValue(kind)!), parse.GetValue(output)!.FullName);
            foreach (var problem in exported.Problems) Console.Error.WriteLine($"embcache: skipped {problem}");
            Console.WriteLine($"exported {exported.Rows:N0} rows x {exported.Dims} dims ({exported.Descr}) to {exported.NpyPath}, ids to {exported.IdsPath}");
            return exported.Problems.Count == 0 ? 0 : 1;
        });
        return command;
    }

    public static Command Import()
    {
        var model = CliOptions.Model("The model to store the vectors under (a new name becomes a store-only model).");
        var npy = new Argument<FileInfo>("npy") { Description = "A (rows, dims) '<f4' or '<f2' .npy, as np.save writes it." };
        var ids = new Option<FileInfo>("--ids") { Description = "The ids, one per row: a JSON array or a text file with one id a line.", Required = true };
        var kind = CliOptions.Kind(VectorKindNames.Document);
        var server = CliOptions.Server();
        var artifacts = CliOptions.Artifacts();
        var command = new Command("import", "Store an existing .npy plus ids in the cache without recomputing (byte for byte).")
        {
            model, npy, ids, kind, server, artifacts,
        };
        command.SetAction(async (parse, cancel) =>
        {
            string? root = CliOptions.DirectRoot(parse, server, artifacts, out string? conflict);
            if (conflict is not null) return CliOptions.Fail(conflict);
            NpyImport import;
            try
            {
                import = NpyImport.Open(parse.GetValue(npy)!.FullName, parse.GetValue(ids)!.FullName);
            }
            catch (Exception e) when (e is InvalidDataException or IOException or JsonException)
            {
                return CliOptions.Fail(e.Message);
            }
            using (import)
            {
                return await StoreAsync(import, parse.GetValue(model)!, parse.GetValue(kind)!, root, parse.GetValue(server)!, cancel);
            }
        });
        return command;
    }

    public static Command Verify()
    {
        var model = CliOptions.Model("The model whose cache is checked.");
        var root = CliOptions.ArtifactsRoot();
        var corpus = new Option<FileInfo?>("--corpus")
        {
            Description = "A corpus the cache was warmed from (read as warm reads it), to recompute a sample of its texts; " +
                          "without it, the texts the server recorded for verification are used.",
        };
        var reading = new CorpusOptions();
        var sample = new Option<int>("--sample") { Description = "Cached rows recomputed.", DefaultValueFactory = _ => 64 };
        var command = new Command("verify", "Check every file of a model's cache (headers, sizes, sidecars, manifest) and recompute a sample of rows.")
        {
            model, root, corpus, sample,
        };
        foreach (var option in reading.All) command.Options.Add(option);
        command.SetAction(parse =>
        {
            string artifacts = parse.GetValue(root)!;
            string name = parse.GetValue(model)!;
            int problems = 0;
            try
            {
                foreach (var files in CacheVerifier.CheckFiles(artifacts, name))
                {
                    Console.WriteLine($"{name} {files.Kind}: {files.Segments} segments, {files.Rows:N0} rows, {files.Dims} dims, {files.Descr}");
                    foreach (var problem in files.Problems) Console.WriteLine($"  problem: {problem}");
                    problems += files.Problems.Count;
                }
                IReadOnlyList<RecomputeReport> recomputed;
                if (parse.GetValue(corpus) is { } corpusFile)
                {
                    var texts = reading.Open(parse, corpusFile).RowsAsync(CancellationToken.None).ToBlockingEnumerable().Select(row => row.Text);
                    recomputed = [CacheVerifier.RecomputeCorpus(artifacts, name, reading.KindOf(parse, corpusFile), texts, corpusFile.Name, parse.GetValue(sample))];
                }
                else
                {
                    recomputed = CacheVerifier.RecomputeRecorded(artifacts, name, parse.GetValue(sample));
                }
                foreach (var report in recomputed)
                {
                    Console.WriteLine(report.Recomputed == 0
                        ? $"recompute {report.Kind}: none of the {report.Source} is cached any more"
                        : string.Create(CultureInfo.InvariantCulture,
                            $"recompute {report.Kind}: {report.Recomputed} cached rows ({report.Source}) recomputed with the model on disk, min cosine {report.MinCosine:F6}"));
                    if (!report.Passed) problems++;
                }
            }
            catch (Exception e) when (e is InvalidDataException or IOException or ModelFolderException)
            {
                return CliOptions.Fail(e.Message);
            }
            Console.WriteLine(problems == 0 ? "verify: ok" : $"verify: {problems} problems");
            return problems == 0 ? 0 : 1;
        });
        return command;
    }

    /// <summary>Stores the rows of <paramref name="import"/> through the root itself when <paramref name="root"/> is given, else through the server.</summary>
    private static async Task<int> StoreAsync(NpyImport import, string model, string kind, string? root, string server, CancellationToken cancel)
    {
        await using var local = root is null ? null : LocalEngine.Open(root);
        using var client = root is null ? new Client.EmbeddingCacheClient(server) : null;
        Func<PutCommand, CancellationToken, Task<int>> put = local is not null
            ? local.Engine.PutAsync
            : (command, token) => PutThroughServerAsync(client!, command, token);
        try
        {
            long stored = await import.StoreAsync(model, CliOptions.ToKind(kind), put, cancel);
            Console.WriteLine($"imported {stored:N0} rows x {import.Dims} dims ({import.Descr}) into {model} ({kind})");
            return 0;
        }
        catch (RpcException e)
        {
            return CliOptions.Fail($"{e.StatusCode}: {e.Status.Detail}");
        }
        catch (CacheRequestException e)
        {
            return CliOptions.Fail(e.Message);
        }
    }

    private static async Task<int> PutThroughServerAsync(Client.EmbeddingCacheClient client, PutCommand put, CancellationToken cancel) =>
        (int)(await client.Rpc.PutAsync(new PutRequest
        {
            Model = put.Model,
            Kind = CliOptions.ToWire(put.Kind),
            Ids = { put.Ids },
            Vectors = new Vectors
            {
                Count = (uint)put.Count,
                Dims = (uint)put.Dims,
                Dtype = put.DType == VectorDType.Float16 ? DType.Float16 : DType.Float32,
                Data = UnsafeByteOperations.UnsafeWrap(put.Data),
            },
        }, cancellationToken: cancel)).Stored;
}
