using System.Net;
using System.Net.Sockets;

namespace EmbeddingCache.FunctionalTests.Infrastructure;

/// <summary>Ports for the server's extra listeners (metrics, OpenAI endpoint), which take a number, not 0.</summary>
public static class LoopbackPort
{
    /// <summary>A port free on 127.0.0.1 right now.</summary>
    public static int Free()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
