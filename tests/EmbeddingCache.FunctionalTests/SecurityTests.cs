using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using EmbeddingCache.Server.Hosting;
using Grpc.Core;
using Grpc.Net.Client;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>Nobody in: TLS, the API key, and which addresses count as exposed.</summary>
public sealed class SecurityTests(ITestOutputHelper output) : ServerTest(output)
{
    [Fact]
    public async Task With_an_api_key_calls_need_it_and_health_stays_open()
    {
        var server = await StartServerAsync("--EmbeddingCache:ApiKey=s3cret-key");
        var request = new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { "hello" } };

        var missing = await Assert.ThrowsAsync<RpcException>(async () => await server.Client.EmbedAsync(request));
        Assert.Equal(StatusCode.Unauthenticated, missing.StatusCode);
        Assert.Contains("authorization: Bearer", missing.Status.Detail);
        var wrong = await Assert.ThrowsAsync<RpcException>(async () =>
            await server.Client.ListModelsAsync(new ListModelsRequest(), new Metadata { { "authorization", "Bearer s3cret-kez" } }));
        Assert.Equal(StatusCode.Unauthenticated, wrong.StatusCode);

        var reply = await server.Client.EmbedAsync(request, new Metadata { { "authorization", "Bearer s3cret-key" } });
        Assert.Equal(1u, reply.Vectors.Count);
        var health = await new Grpc.Health.V1.Health.HealthClient(server.Channel).CheckAsync(new Grpc.Health.V1.HealthCheckRequest());
        Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving, health.Status);
        Assert.DoesNotContain(server.Log.Split('\n'), line => line.Contains("ExposedWithoutApiKey", StringComparison.Ordinal) || line.Contains("!!!", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Every_malformed_or_wrong_key_is_unauthenticated_on_both_call_shapes_while_health_answers()
    {
        var server = await StartServerAsync("--EmbeddingCache:ApiKey=k3y");
        var health = new Grpc.Health.V1.Health.HealthClient(server.Channel);
        foreach (var presented in new[] { "", "k3y", "Bearer", "Bearer ", "Bearer k3", "Bearer k3y ", "bearer k3y", "Basic k3y" })
        {
            var headers = presented.Length == 0 ? new Metadata() : new Metadata { { "authorization", presented } };
            var refused = await Assert.ThrowsAsync<RpcException>(async () =>
                await server.Client.GetAsync(new GetRequest { Model = Wire.MiniLM, Kind = Kind.Query, Ids = { "x" } }, headers));
            Assert.Equal(StatusCode.Unauthenticated, refused.StatusCode);
            // Load balancers probe health without credentials: it answers whatever the key.
            Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving,
                (await health.CheckAsync(new Grpc.Health.V1.HealthCheckRequest(), headers)).Status);
        }
        var stream = server.Client.EmbedStream(new Metadata { { "authorization", "Bearer nope" } });
        await stream.RequestStream.WriteAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Query, Texts = { "q" } });
        var streamed = await Assert.ThrowsAsync<RpcException>(() => stream.ResponseStream.MoveNext());
        Assert.Equal(StatusCode.Unauthenticated, streamed.StatusCode);
    }

    [Theory]
    [InlineData("pem")]
    [InlineData("pfx")]
    public async Task With_a_certificate_from_configuration_it_serves_tls_and_refuses_plaintext(string format)
    {
        using var certificates = new TempDirectory();
        using var certificate = SelfSignedLoopbackCertificate();
        string[] tls = format == "pem"
            ? [$"--Kestrel:Certificates:Default:Path={Write(certificates, "cert.pem", certificate.ExportCertificatePem())}",
               $"--Kestrel:Certificates:Default:KeyPath={Write(certificates, "key.pem", certificate.GetRSAPrivateKey()!.ExportPkcs8PrivateKeyPem())}"]
            : [$"--Kestrel:Certificates:Default:Path={Write(certificates, "cert.pfx", certificate.Export(X509ContentType.Pfx, "pfx-password"))}",
               "--Kestrel:Certificates:Default:Password=pfx-password"];
        using var trusted = X509CertificateLoader.LoadCertificate(certificate.RawData);

        var server = await StartServerAsync(trusted, ["--urls", "https://127.0.0.1:0", .. tls]);
        Assert.StartsWith("https://", server.Address, StringComparison.Ordinal);
        var reply = await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { "over tls" } });
        Assert.Equal(1u, reply.Vectors.Count);
        Assert.Equal(384u, reply.Vectors.Dims);

        // A plaintext client gets no answer from the TLS port, and a client that does not trust the certificate hangs up.
        var plaintext = await RefusedAsync(server.Address.Replace("https://", "http://", StringComparison.Ordinal));
        Assert.Equal(StatusCode.Unavailable, plaintext.StatusCode);
        Assert.Contains("HTTP/2 handshake", plaintext.Status.Detail, StringComparison.Ordinal);
        var untrusting = await RefusedAsync(server.Address);
        Assert.Contains("UntrustedRoot", untrusting.Status.Detail, StringComparison.Ordinal);
        Assert.False(server.HasExited);
    }

    private async Task<RpcException> RefusedAsync(string address)
    {
        using var channel = GrpcChannel.ForAddress(address);
        var client = new EmbeddingCache.Protocol.V1.EmbeddingCache.EmbeddingCacheClient(channel);
        var refused = await Assert.ThrowsAsync<RpcException>(async () => await client.EmbedAsync(
            new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { "in the clear" } }, deadline: DateTime.UtcNow.AddSeconds(60)));
        Output.WriteLine($"{address}: {refused.StatusCode}: {refused.Status.Detail}");
        return refused;
    }

    /// <summary>A certificate for 127.0.0.1 and localhost, as an operator would make one for a test deployment.</summary>
    private static X509Certificate2 SelfSignedLoopbackCertificate()
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=embcache test", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(IPAddress.Loopback);
        names.AddDnsName("localhost");
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1", "Server Authentication")], critical: false));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
    }

    private static string Write(TempDirectory directory, string name, string text) => Write(directory, name, System.Text.Encoding.ASCII.GetBytes(text));

    private static string Write(TempDirectory directory, string name, byte[] content)
    {
        string path = Path.Combine(directory.Path, name);
        File.WriteAllBytes(path, content);
        return path;
    }

    [Theory]
    [InlineData("http://127.0.0.1:50051", true)]
    [InlineData("http://127.8.9.10:1", true)]
    [InlineData("http://localhost:50051", true)]
    [InlineData("http://[::1]:50051", true)]
    [InlineData("http://0.0.0.0:50051", false)]
    [InlineData("http://*:50051", false)]
    [InlineData("http://+:50051", false)]
    [InlineData("http://[::]:50051", false)]
    [InlineData("http://192.168.1.20:50051", false)]
    [InlineData("https://embeddings.example.org:443", false)]
    public void Only_loopback_addresses_count_as_private(string url, bool loopback) =>
        Assert.Equal(loopback, ServerHost.IsLoopback(url));
}
