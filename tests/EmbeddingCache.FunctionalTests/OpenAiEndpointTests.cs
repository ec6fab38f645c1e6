using System.Net;
using System.Text;
using System.Text.Json;
using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using Grpc.Core;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>
/// The OpenAI-compatible endpoint (EmbeddingCache:OpenAiPort): the official openai npm package (tests/openai) gets the
/// vectors Embed gives, float and base64, and OpenAI-style errors; limits and the API key hold there as over gRPC.
/// </summary>
public sealed class OpenAiEndpointTests(ITestOutputHelper output) : ServerTest(output)
{
    private const string Key = "open-sesame";
    private static readonly TimeSpan NodeTimeout = TimeSpan.FromMinutes(5);
    private static readonly SemaphoreSlim NpmInstall = new(1, 1);
    private static readonly Metadata Authorized = new() { { "authorization", "Bearer " + Key } };

    [Fact]
    public async Task The_official_openai_npm_client_gets_the_vectors_embed_gives_and_openai_style_errors()
    {
        int port = LoopbackPort.Free();
        var server = await StartServerAsync($"--EmbeddingCache:OpenAiPort={port}", $"--EmbeddingCache:ApiKey={Key}");
        var expected = new
        {
            model = Wire.MiniLM,
            documents = await EmbedAsync(server, Kind.Document, Wire.Texts(seed: 71, count: 5)),
            queries = await EmbedAsync(server, Kind.Query, ["what is dense retrieval?", "café prices in 東京"]),
        };
        string expectedPath = Path.Combine(Artifacts.Path, "expected.json");
        await File.WriteAllTextAsync(expectedPath, JsonSerializer.Serialize(expected));
        string folder = await OpenAiPackageFolderAsync();

        string log = await ExternalTool.RunAsync("node", folder, new Dictionary<string, string>
        {
            ["EMBCACHE_OPENAI_URL"] = $"http://127.0.0.1:{port}/v1",
            ["EMBCACHE_API_KEY"] = Key,
            ["EMBCACHE_EXPECTED"] = expectedPath,
        }, NodeTimeout, "--test", "--test-reporter=spec", "embeddings.test.mjs");

        Output.WriteLine(log);
        Assert.Matches(@"pass [1-9]\d*", log);
        Assert.Contains("fail 0", log, StringComparison.Ordinal);
        Assert.DoesNotContain("skipped 1", log, StringComparison.Ordinal);
        Assert.Empty(server.ErrorLines());
    }

    [Fact]
    public async Task Limits_and_the_api_key_hold_with_openai_style_errors_and_other_calls_go_on()
    {
        int port = LoopbackPort.Free();
        var server = await StartServerAsync($"--EmbeddingCache:OpenAiPort={port}", $"--EmbeddingCache:ApiKey={Key}",
            "--EmbeddingCache:MaxRowsPerRequest=4", "--EmbeddingCache:MaxReceiveMessageBytes=2000");
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/") };
        string fits = JsonSerializer.Serialize(new { model = Wire.MiniLM, input = new[] { "a", "b" } });
        (string Name, string? Authorization, string Path, string? Body, HttpStatusCode Status, string Code, string Message)[] cases =
        [
            ("no key", null, "v1/embeddings", fits, HttpStatusCode.Unauthorized, "invalid_api_key", "requires an API key"),
            ("no key for the model list", null, "v1/models", null, HttpStatusCode.Unauthorized, "invalid_api_key", "requires an API key"),
            ("wrong key", "Bearer open", "v1/embeddings", fits, HttpStatusCode.Unauthorized, "invalid_api_key", "requires an API key"),
            ("more texts than MaxRowsPerRequest", "Bearer " + Key, "v1/embeddings",
                JsonSerializer.Serialize(new { model = Wire.MiniLM, input = Enumerable.Repeat("t", 5) }),
                HttpStatusCode.RequestEntityTooLarge, "request_too_large", "at most 4 are allowed"),
            ("body over MaxReceiveMessageBytes", "Bearer " + Key, "v1/embeddings",
                JsonSerializer.Serialize(new { model = Wire.MiniLM, input = new string('x', 3000) }),
                HttpStatusCode.RequestEntityTooLarge, "request_too_large", "EmbeddingCache:MaxReceiveMessageBytes"),
            ("not JSON", "Bearer " + Key, "v1/embeddings", "{model", HttpStatusCode.BadRequest, "", "not valid JSON"),
            ("no input", "Bearer " + Key, "v1/embeddings", "{\"model\": \"all-MiniLM-L6-v2\"}", HttpStatusCode.BadRequest, "", "'input' is missing"),
            ("bad model name", "Bearer " + Key, "v1/embeddings", "{\"model\": \"a/../../etc\", \"input\": \"x\"}", HttpStatusCode.BadRequest, "", "'/'"),
            ("unknown route", "Bearer " + Key, "v1/chat/completions", "{}", HttpStatusCode.NotFound, "unknown_url", "POST /v1/embeddings"),
        ];
        foreach (var (name, authorization, path, body, status, code, message) in cases)
        {
            using var request = new HttpRequestMessage(body is null ? HttpMethod.Get : HttpMethod.Post, path);
            if (body is not null) request.Content = new StringContent(body, Encoding.UTF8, "application/json");
            if (authorization is not null) request.Headers.TryAddWithoutValidation("Authorization", authorization);

            using var response = await http.SendAsync(request);

            string reply = await response.Content.ReadAsStringAsync();
            Output.WriteLine($"{name}: {(int)response.StatusCode} {reply}");
            Assert.Equal(status, response.StatusCode);
            using var json = JsonDocument.Parse(reply);
            var error = json.RootElement.GetProperty("error");
            Assert.Contains(message, error.GetProperty("message").GetString(), StringComparison.Ordinal);
            Assert.Equal(code, error.GetProperty("code").GetString() ?? "");
            Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        }
        // gRPC on its own port is unharmed, and the endpoint still answers.
        var embedded = await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { "a", "b" } }, Authorized);
        Assert.Equal(2u, embedded.Vectors.Count);
        using var good = new HttpRequestMessage(HttpMethod.Post, "v1/embeddings") { Content = new StringContent(fits, Encoding.UTF8, "application/json") };
        good.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", Key);
        Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(good)).StatusCode);
        Assert.Empty(server.ErrorLines());
    }

    [Fact]
    public async Task The_endpoint_is_off_unless_its_port_is_set()
    {
        var server = await StartServerAsync();

        Assert.DoesNotContain("OpenAiEndpointListening", server.Log, StringComparison.Ordinal);
        var on = await StartServerOnAsync(Path.Combine(Artifacts.Path, "second"), $"--EmbeddingCache:OpenAiPort={LoopbackPort.Free()}");
        Assert.Contains("OpenAiEndpointListening", on.Log, StringComparison.Ordinal);
    }

    /// <summary>The texts and what Embed over gRPC gives for them, each vector as base64 of its float32 little-endian bytes.</summary>
    private static async Task<object> EmbedAsync(ServerProcess server, Kind kind, string[] texts)
    {
        var reply = await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = kind, Texts = { texts } }, Authorized);
        return new { texts, vectors = Enumerable.Range(0, texts.Length).Select(i => Convert.ToBase64String(Wire.Row(reply.Vectors, i))).ToArray() };
    }

    /// <summary>tests/openai with its node_modules: npm ci from the committed lock file when the openai package is not installed yet.</summary>
    private static async Task<string> OpenAiPackageFolderAsync()
    {
        string folder = Path.Combine(SourceTree.Root, "tests", "openai");
        await NpmInstall.WaitAsync();
        try
        {
            if (!File.Exists(Path.Combine(folder, "node_modules", "openai", "package.json")))
            {
                await ExternalTool.RunAsync("npm", folder, new Dictionary<string, string>(), NodeTimeout, "ci", "--no-audit", "--no-fund");
            }
        }
        finally
        {
            NpmInstall.Release();
        }
        return folder;
    }
}
