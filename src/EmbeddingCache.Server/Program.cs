using EmbeddingCache.Server.Cli;

return await EmbcacheCommandLine.RunAsync(args);
