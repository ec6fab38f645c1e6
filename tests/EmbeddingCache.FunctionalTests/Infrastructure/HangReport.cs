using System.Diagnostics;
using System.Globalization;
using System.Text;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client;

namespace EmbeddingCache.FunctionalTests.Infrastructure;

/// <summary>
/// What a test prints when a call to a live server got no reply by its deadline: enough to tell a client-side hang
/// (the test's connection, its thread pool) from a server-side one, without rerunning.
/// </summary>
public static class HangReport
{
    private static readonly TimeSpan ProbeDeadline = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan StackTimeout = TimeSpan.FromSeconds(60);

    /// <summary>
    /// The server's process and channel state, a health check over the test's channel and over a new one, and
    /// <paramref name="probe"/> (the call that hung, say) over a new channel; then the stacks of both processes
    /// when dotnet-stack is installed.
    /// </summary>
    public static async Task<string> DescribeAsync(ServerProcess server, Func<CallInvoker, DateTime, Task>? probe = null)
    {
        var c = CultureInfo.InvariantCulture;
        var text = new StringBuilder();
        text.AppendLine("--- hang report ---");
        text.AppendLine(c, $"server pid {server.ProcessId} at {server.Address}: {(server.HasExited ? "exited" : "running")}");
        text.AppendLine(c, $"test process: {ThreadPool.ThreadCount} pool threads, {ThreadPool.PendingWorkItemCount} work items queued, " +
                           $"{ThreadPool.CompletedWorkItemCount} completed; test channel state {ChannelState(server.Channel)}");
        text.AppendLine(c, $"health over the test's channel: {await TimedAsync(() => HealthAsync(server.Channel.CreateCallInvoker()))}");
        using (var fresh = GrpcChannel.ForAddress(server.Address))
        {
            var invoker = fresh.CreateCallInvoker();
            text.AppendLine(c, $"health over a new channel: {await TimedAsync(() => HealthAsync(invoker))}");
            if (probe is not null)
            {
                text.AppendLine(c, $"the same call over a new channel: {await TimedAsync(() => probe(invoker, DateTime.UtcNow + ProbeDeadline))}");
            }
        }
        text.AppendLine("(answered over a new channel but not over the test's: the test's connection or its threads hang; not answered at all: the server hangs)");
        text.AppendLine(await StacksAsync("server", server.ProcessId));
        text.AppendLine(await StacksAsync("test process", Environment.ProcessId));
        return text.ToString();
    }

    private static Task HealthAsync(CallInvoker invoker) =>
        new Health.HealthClient(invoker).CheckAsync(new HealthCheckRequest(), deadline: DateTime.UtcNow + ProbeDeadline).ResponseAsync;

    private static async Task<string> TimedAsync(Func<Task> call)
    {
        var watch = Stopwatch.StartNew();
        try
        {
            await call();
            return $"answered in {watch.ElapsedMilliseconds} ms";
        }
        catch (RpcException e)
        {
            return $"{e.StatusCode} after {watch.ElapsedMilliseconds} ms ({e.Status.Detail})";
        }
    }

    private static string ChannelState(GrpcChannel channel)
    {
        try
        {
            return channel.State.ToString();
        }
        catch (InvalidOperationException e)
        {
            return $"unknown ({e.Message})";
        }
    }

    /// <summary>Every managed thread's stack, from dotnet-stack; without it, a line saying how to get them.</summary>
    private static async Task<string> StacksAsync(string whose, int processId)
    {
        string? tool = DotnetStack();
        if (tool is null)
        {
            return $"no stacks of the {whose}: dotnet-stack is not installed (dotnet tool install -g dotnet-stack --version 10.0.750501)";
        }
        try
        {
            return $"stacks of the {whose} (pid {processId}):\n" +
                   await ExternalTool.RunAsync(tool, Environment.CurrentDirectory, new Dictionary<string, string>(), StackTimeout, "report", "-p", processId.ToString(CultureInfo.InvariantCulture));
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException)
        {
            return $"no stacks of the {whose}: {e.Message}";
        }
    }

    private static string? DotnetStack()
    {
        var folders = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
            .Append(Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".dotnet", "tools"));
        return folders.Select(folder => Path.Combine(folder, "dotnet-stack")).FirstOrDefault(File.Exists);
    }
}
