using EmbeddingCache.Server.Hosting;

return await ServerHost.RunAsync(args);
