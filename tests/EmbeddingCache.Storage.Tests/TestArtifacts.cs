using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace EmbeddingCache.Storage.Tests;

/// <summary>A temporary artifacts directory per test, deleted afterwards, with captured logs.</summary>
internal sealed class TestArtifacts : IDisposable
{
    public TestArtifacts(ITestOutputHelper? output = null, string? root = null)
    {
        Root = root ?? Path.Combine(Path.GetTempPath(), "embcache-storage-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Root);
        Logs = new CapturingLoggerFactory(output);
    }

    public string Root { get; }

    public CapturingLoggerFactory Logs { get; }

    public ArtifactsRoot Open(int segmentRows = 65536, DurabilityMode durability = DurabilityMode.GroupCommit, int retentionSeconds = 60, int publishIntervalMs = 50) =>
        ArtifactsRoot.Open(
            Root,
            new StorageOptions { SegmentRows = segmentRows, Durability = durability, InvalidatedRetentionSeconds = retentionSeconds, PublishIntervalMs = publishIntervalMs },
            Logs);

    public string KindDirectory(string model, VectorKind kind) =>
        Path.Combine(Root, "embeddings", model, kind == VectorKind.Query ? "query" : "document");

    public void Dispose()
    {
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }
}

internal sealed record LogEntry(LogLevel Level, string? EventName, string Message, Exception? Exception);

internal sealed class CapturingLoggerFactory(ITestOutputHelper? output) : ILoggerFactory
{
    public ConcurrentQueue<LogEntry> Entries { get; } = new();

    public int Count(string eventName) => Entries.Count(e => e.EventName == eventName);

    public IEnumerable<LogEntry> Events(string eventName) => Entries.Where(e => e.EventName == eventName);

    public ILogger CreateLogger(string categoryName) => new CapturingLogger(this);

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public void Dispose()
    {
    }

    private void Write(LogEntry entry)
    {
        Entries.Enqueue(entry);
        try
        {
            output?.WriteLine($"[{entry.Level}] {entry.EventName}: {entry.Message}{(entry.Exception is null ? "" : " " + entry.Exception.Message)}");
        }
        catch (InvalidOperationException)
        {
            // The test has finished; the entry is still captured.
        }
    }

    private sealed class CapturingLogger(CapturingLoggerFactory factory) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            factory.Write(new LogEntry(logLevel, eventId.Name, formatter(state, exception), exception));
    }
}
