using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;

namespace EmbeddingCache.Benchmarks.Micro;

/// <summary>The one config every micro-benchmark runs under: BenchmarkDotNet's defaults plus allocations per operation.</summary>
public static class MicroBenchmarkConfig
{
    /// <summary>The shared config.</summary>
    public static IConfig Create() => DefaultConfig.Instance.AddDiagnoser(MemoryDiagnoser.Default);
}
