using System.Collections.Concurrent;
using System.Diagnostics;
using Grpc.Core;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;

namespace EmbeddingCache.Server.Hosting;

/// <summary>
/// Slows down a connection that keeps making calls the server refuses. Each connection has a budget of
/// <see cref="ServerOptions.RefusalsPerSecond"/> refusals (a token bucket holding one second's worth); past it, a
/// refusal is held back for <see cref="ServerOptions.RefusalBrake"/> before the call ends. It sits outside gRPC so that
/// it also sees messages refused for their size before any service code runs.
/// </summary>
internal sealed partial class RefusalBrakeMiddleware(RequestDelegate next, IOptions<ServerOptions> options, ILogger<RefusalBrakeMiddleware> logger)
{
    /// <summary>Connections tracked before idle ones are forgotten.</summary>
    private const int PruneAbove = 1024;

    private readonly ServerOptions _options = options.Value;
    private readonly ConcurrentDictionary<string, RefusalBudget> _budgets = new();

    public async Task InvokeAsync(HttpContext context)
    {
        await next(context).ConfigureAwait(false);
        if (_options.RefusalsPerSecond <= 0 || !IsRefusal(context))
        {
            return;
        }

        var connection = context.Connection.Id;
        var budget = _budgets.GetOrAdd(connection, _ => new RefusalBudget(_options.RefusalsPerSecond));
        if (budget.TrySpend())
        {
            return;
        }

        if (budget.MarkBraked())
        {
            LogBraking(logger, connection, context.Connection.RemoteIpAddress?.ToString() ?? "?", _options.RefusalsPerSecond);
        }

        if (_budgets.Count > PruneAbove)
        {
            Prune();
        }

        try
        {
            await Task.Delay(_options.RefusalBrake, context.RequestAborted).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // The client gave up waiting: nothing left to hold back.
        }
    }

    /// <summary>The gRPC status of a finished call, from its trailers (or its headers, for a trailers-only reply).</summary>
    private static bool IsRefusal(HttpContext context)
    {
        var status = context.Features.Get<IHttpResponseTrailersFeature>()?.Trailers["grpc-status"].ToString();
        if (string.IsNullOrEmpty(status))
        {
            status = context.Response.Headers["grpc-status"].ToString();
        }

        return int.TryParse(status, out var code) && (StatusCode)code is StatusCode.InvalidArgument or StatusCode.NotFound
            or StatusCode.ResourceExhausted or StatusCode.FailedPrecondition or StatusCode.OutOfRange or StatusCode.Unauthenticated;
    }

    private void Prune()
    {
        foreach (var (connection, budget) in _budgets)
        {
            if (budget.IdleFor > TimeSpan.FromMinutes(1))
            {
                _budgets.TryRemove(connection, out _);
            }
        }
    }

    [LoggerMessage(EventId = 4, EventName = "RefusalsBraked", Level = LogLevel.Warning,
        Message = "Connection {Connection} from {Remote} makes more than {PerSecond} refused calls a second: its refusals are now answered after a pause")]
    private static partial void LogBraking(ILogger logger, string connection, string remote, int perSecond);

    /// <summary>A token bucket of refusals: it holds one second's worth and refills continuously.</summary>
    private sealed class RefusalBudget(int perSecond)
    {
        private readonly Lock _gate = new();
        private double _tokens = perSecond;
        private long _refilledAt = Stopwatch.GetTimestamp();
        private bool _braked;

        public TimeSpan IdleFor => Stopwatch.GetElapsedTime(Volatile.Read(ref _refilledAt));

        public bool TrySpend()
        {
            lock (_gate)
            {
                var now = Stopwatch.GetTimestamp();
                _tokens = Math.Min(perSecond, _tokens + (Stopwatch.GetElapsedTime(_refilledAt, now).TotalSeconds * perSecond));
                _refilledAt = now;
                if (_tokens < 1)
                {
                    return false;
                }

                _tokens -= 1;
                return true;
            }
        }

        /// <summary>True the first time the connection is braked (it is logged once).</summary>
        public bool MarkBraked()
        {
            lock (_gate)
            {
                var first = !_braked;
                _braked = true;
                return first;
            }
        }
    }
}
