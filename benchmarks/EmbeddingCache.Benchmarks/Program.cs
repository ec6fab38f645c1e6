using EmbeddingCache.Benchmarks;

return await BenchmarkVerbs.RunAsync(args);
