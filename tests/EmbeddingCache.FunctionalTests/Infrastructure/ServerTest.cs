using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests.Infrastructure;

/// <summary>
/// Base of tests that run real servers: a temporary artifacts directory per test, every server started
/// through <see cref="StartServerAsync"/> is stopped afterwards and its log shown in the test output.
/// </summary>
public abstract class ServerTest(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly List<ServerProcess> servers = [];

    protected TempDirectory Artifacts { get; } = new();

    protected ITestOutputHelper Output { get; } = output;

    protected Task<ServerProcess> StartServerAsync(params string[] extraArgs) => StartServerOnAsync(Artifacts.Path, extraArgs);

    /// <summary>Starts a server whose client channel trusts <paramref name="trustedCertificate"/> (null: plaintext).</summary>
    protected Task<ServerProcess> StartServerAsync(System.Security.Cryptography.X509Certificates.X509Certificate2? trustedCertificate, params string[] extraArgs) =>
        StartServerOnAsync(Artifacts.Path, trustedCertificate, extraArgs);

    /// <summary>A server on another artifacts root than the test's own (a small filesystem, say).</summary>
    protected Task<ServerProcess> StartServerOnAsync(string artifactsDirectory, params string[] extraArgs) =>
        StartServerOnAsync(artifactsDirectory, trustedCertificate: null, extraArgs);

    private async Task<ServerProcess> StartServerOnAsync(
        string artifactsDirectory, System.Security.Cryptography.X509Certificates.X509Certificate2? trustedCertificate, params string[] extraArgs)
    {
        var server = await ServerProcess.StartAsync(artifactsDirectory, trustedCertificate, extraArgs);
        servers.Add(server);
        return server;
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public virtual async Task DisposeAsync()
    {
        foreach (var server in servers)
        {
            await server.DisposeAsync();
            Output.WriteLine($"--- embcache log (pid {server.ProcessId}) ---\n{server.Log}");
        }
        Artifacts.Dispose();
    }
}
