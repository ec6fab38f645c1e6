using System.CommandLine;
using System.Globalization;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Text.Json;
using EmbeddingCache.Engine;
using EmbeddingCache.Inference;
using EmbeddingCache.Protocol.V1;
using EmbeddingCache.Storage;
using Google.Protobuf;
using Grpc.Core;

namespace EmbeddingCache.Server.Cli;

/// <summary>
/// <c>export</c>, <c>import</c> and <c>verify</c>: the cache as files a researcher moves around. Export and
/// verify read the files directly (safe next to a running server); import goes through a server or, with
/// --artifacts, the root itself.
/// </summary>
internal static class FileVerbs
{
    /// <summary>Rows per Put while importing: about 6 MB of 384-dim float32, far below message limits.</summary>
    private const int ImportChunkRows = 4096;

    public static Command Export()
    {
        var model = CliOptions.Model("The model whose cache is exported.");
        var kind = CliOptions.Kind("document");
        var output = new Option<FileInfo>("--out", "-o") { Description = "The .npy to write; the ids go beside it as <name>.ids.json.", Required = true };
        var root = CliOptions.ArtifactsRoot();
        var command = new Command("export", "Write a model's cached vectors as one contiguous .npy (newest row per id) plus its ids, for np.load.")
        {
            model, kind, output, root,
        };
        command.SetAction(parse =>
        {
            var snapshot = KindSnapshot.Read(parse.GetValue(root)!, parse.GetValue(model)!, CliOptions.ToKind(parse.GetValue(kind)!));
            foreach (var problem in snapshot.Problems) Console.Error.WriteLine($"embcache: skipped {problem}");
            var rows = snapshot.LiveRows();
            var file = parse.GetValue(output)!;
            int rowBytes = snapshot.Dims * snapshot.DType.BytesPerElement();
            string temporary = file.FullName + ".tmp";
            using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write))
            {
                stream.Write(NpyHeader.Format(snapshot.DType, rows.Count, snapshot.Dims));
                var buffer = new byte[rowBytes];
                foreach (var row in rows)
                {
                    snapshot.ReadVector(row, buffer);
                    stream.Write(buffer);
                }
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, file.FullName, overwrite: true);
            string idsPath = IdsPathOf(file.FullName);
            File.WriteAllText(idsPath, JsonSerializer.Serialize(rows.Select(r => r.Id).ToArray()));
            Console.WriteLine($"exported {rows.Count:N0} rows x {snapshot.Dims} dims ({NpyLabel(snapshot.DType)}) to {file.FullName}, ids to {idsPath}");
            return snapshot.Problems.Count == 0 ? 0 : 1;
        });
        return command;
    }

    public static Command Import()
    {
        var model = CliOptions.Model("The model to store the vectors under (a new name becomes a store-only model).");
        var npy = new Argument<FileInfo>("npy") { Description = "A (rows, dims) '<f4' or '<f2' .npy, as np.save writes it." };
        var ids = new Option<FileInfo>("--ids") { Description = "The ids, one per row: a JSON array or a text file with one id a line.", Required = true };
        var kind = CliOptions.Kind("document");
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
            var file = parse.GetValue(npy)!;
            NpyHeader header;
            string[] rowIds;
            try
            {
                header = NpyHeader.Read(file.FullName);
                rowIds = ReadIds(parse.GetValue(ids)!.FullName);
            }
            catch (Exception e) when (e is InvalidDataException or IOException or JsonException)
            {
                return CliOptions.Fail(e.Message);
            }
            if (header.VectorType is not { } dtype || header.Shape.Length != 2 || header.FortranOrder)
            {
                return CliOptions.Fail($"{file.Name} holds {header.Descr} with shape ({string.Join(", ", header.Shape)}): import takes a C-order " +
                                       "(rows, dims) float32 or float16 array, e.g. np.save(path, vectors.astype('<f4'))");
            }
            if (rowIds.Length != header.Rows)
            {
                return CliOptions.Fail($"{file.Name} has {header.Rows} rows but the ids file has {rowIds.Length} ids");
            }
            string target = parse.GetValue(model)!;
            var vectorKind = CliOptions.ToKind(parse.GetValue(kind)!);
            int rowBytes = header.Columns * dtype.BytesPerElement();
            using var handle = File.OpenHandle(file.FullName);
            Func<string[], byte[], int, Task<int>> put;
            await using var local = root is null ? null : LocalEngine.Open(root);
            var engine = local?.Engine;
            using var client = root is null ? new Client.EmbeddingCacheClient(parse.GetValue(server)!) : null;
            if (engine is not null)
            {
                put = (chunkIds, data, count) => engine.PutAsync(
                    new PutCommand(target, vectorKind, chunkIds, [], count, header.Columns, dtype, data), cancel);
            }
            else
            {
                put = async (chunkIds, data, count) => (int)(await client!.Rpc.PutAsync(new PutRequest
                {
                    Model = target,
                    Kind = CliOptions.ToWire(vectorKind),
                    Ids = { chunkIds },
                    Vectors = new Vectors
                    {
                        Count = (uint)count,
                        Dims = (uint)header.Columns,
                        Dtype = dtype == VectorDType.Float16 ? DType.Float16 : DType.Float32,
                        Data = UnsafeByteOperations.UnsafeWrap(data),
                    },
                }, cancellationToken: cancel)).Stored;
            }
            try
            {
                long stored = 0;
                for (long start = 0; start < header.Rows; start += ImportChunkRows)
                {
                    int count = (int)Math.Min(ImportChunkRows, header.Rows - start);
                    var data = new byte[count * rowBytes];
                    RandomAccess.Read(handle, data, header.DataOffset + start * rowBytes);
                    stored += await put(rowIds[(int)start..((int)start + count)], data, count);
                }
                Console.WriteLine($"imported {stored:N0} rows x {header.Columns} dims ({header.Descr}) into {target} ({parse.GetValue(kind)})");
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
            foreach (var each in new[] { VectorKind.Query, VectorKind.Document })
            {
                var snapshot = KindSnapshot.Read(artifacts, name, each);
                Console.WriteLine($"{name} {each}: {snapshot.SegmentCount} segments, {snapshot.RowCount:N0} rows, {snapshot.Dims} dims, {NpyLabel(snapshot.DType)}");
                foreach (var problem in snapshot.Problems) Console.WriteLine($"  problem: {problem}");
                problems += snapshot.Problems.Count;
            }
            var definition = ModelDefinition.Load(Path.Combine(artifacts, "models", name));
            if (parse.GetValue(corpus) is { } corpusFile)
            {
                var corpusKind = reading.KindOf(parse, corpusFile);
                var random = new Random(17);
                try
                {
                    var inputs = reading.Open(parse, corpusFile).RowsAsync(CancellationToken.None).ToBlockingEnumerable()
                        .Where(_ => random.Next(4) == 0)
                        .Select(row => definition.PrefixFor(corpusKind == VectorKind.Query) + row.Text);
                    problems += RecomputeSample(artifacts, definition, corpusKind, inputs, parse.GetValue(sample), $"texts of {corpusFile.Name}");
                }
                catch (Exception e) when (e is InvalidDataException or IOException)
                {
                    return CliOptions.Fail(e.Message);
                }
            }
            else
            {
                // The server records the texts of the first rows it computes, since the cache keeps only their hashes.
                string embeddings = Path.Combine(artifacts, "embeddings");
                foreach (var each in new[] { VectorKind.Query, VectorKind.Document })
                {
                    var inputs = VerifySamples.Read(embeddings, name, each);
                    if (inputs.Count > 0) problems += RecomputeSample(artifacts, definition, each, inputs, parse.GetValue(sample), $"recorded {each} texts");
                }
            }
            Console.WriteLine(problems == 0 ? "verify: ok" : $"verify: {problems} problems");
            return problems == 0 ? 0 : 1;
        });
        return command;
    }

    /// <summary>
    /// Recomputes the cached rows of up to <paramref name="sampleSize"/> tokenizer inputs with the model on disk;
    /// returns 1 if any falls below 0.9999 cosine to what is stored (a changed ONNX Runtime or model file), else 0.
    /// </summary>
    private static int RecomputeSample(
        string artifacts, ModelDefinition definition, VectorKind kind, IEnumerable<string> inputs, int sampleSize, string source)
    {
        using var logging = LoggerFactory.Create(builder => builder.SetMinimumLevel(LogLevel.Warning));
        using var encoder = TextEncoder.Load(definition, new EncoderOptions(), logging);
        var snapshot = KindSnapshot.Read(artifacts, definition.Name, kind);
        var rowByKey = new Dictionary<ContentKey, StoredRow>();
        foreach (var row in snapshot.LiveRows())
        {
            if (row.Key is { } key) rowByKey[key] = row;
        }
        var texts = inputs.Where(input => rowByKey.ContainsKey(ContentKey.FromText(input))).Take(sampleSize).ToArray();
        if (texts.Length == 0)
        {
            Console.WriteLine($"recompute {kind}: none of the {source} is cached any more");
            return 0;
        }
        var fresh = new float[texts.Length * encoder.Dims];
        encoder.Encode(texts, fresh);
        var stored = new byte[encoder.Dims * snapshot.DType.BytesPerElement()];
        var storedFloats = new float[encoder.Dims];
        double worst = 1;
        foreach (var (input, i) in texts.Select((t, i) => (t, i)))
        {
            snapshot.ReadVector(rowByKey[ContentKey.FromText(input)], stored);
            if (snapshot.DType == VectorDType.Float16) TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(stored), storedFloats);
            else MemoryMarshal.Cast<byte, float>(stored).CopyTo(storedFloats);
            worst = Math.Min(worst, TensorPrimitives.CosineSimilarity(storedFloats, fresh.AsSpan(i * encoder.Dims, encoder.Dims)));
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"recompute {kind}: {texts.Length} cached rows ({source}) recomputed with the model on disk, min cosine {worst:F6}"));
        return worst >= 0.9999 ? 0 : 1;
    }

    private static string NpyLabel(VectorDType dtype) => dtype.NpyDescr();

    private static string IdsPathOf(string npyPath) => Path.ChangeExtension(npyPath, null) + ".ids.json";

    private static string[] ReadIds(string path)
    {
        string content = File.ReadAllText(path);
        return content.TrimStart().StartsWith('[')
            ? JsonSerializer.Deserialize<string[]>(content) ?? []
            : content.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line => line.TrimEnd('\r')).ToArray();
    }
}
