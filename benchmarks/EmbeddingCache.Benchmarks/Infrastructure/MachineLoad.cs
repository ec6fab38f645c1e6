using System.Diagnostics;
using System.Globalization;

namespace EmbeddingCache.Benchmarks.Infrastructure;

/// <summary>
/// How busy the machine was, so that a reader knows whether figures come from a quiet machine: the load average,
/// and over a measured phase the machine's busy CPU share from <c>/proc/stat</c> split into this benchmark's own
/// processes (this program and the server it started) and everything else. Reads nothing where there is no /proc.
/// </summary>
public static class MachineLoad
{
    /// <summary>The 1, 5 and 15 minute load averages as <c>/proc/loadavg</c> states them, or "n/a".</summary>
    public static string LoadAverage()
    {
        try
        {
            var fields = File.ReadAllText("/proc/loadavg").Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return $"{fields[0]} / {fields[1]} / {fields[2]}";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or IndexOutOfRangeException)
        {
            return "n/a";
        }
    }

    /// <summary>Starts watching a phase; <paramref name="ownCpuTime"/> returns the CPU time of the processes under test so far.</summary>
    public static PhaseWatch Watch(Func<TimeSpan> ownCpuTime) => new(ownCpuTime);

    internal static (long Busy, long Total)? ReadProcStat()
    {
        try
        {
            using var reader = new StreamReader("/proc/stat");
            var cpu = reader.ReadLine();
            if (cpu is null || !cpu.StartsWith("cpu ", StringComparison.Ordinal))
            {
                return null;
            }

            // user nice system idle iowait irq softirq steal (guest time is already inside user).
            var ticks = cpu.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Take(8)
                .Select(field => long.Parse(field, CultureInfo.InvariantCulture)).ToArray();
            var total = ticks.Sum();
            var idle = ticks[3] + ticks[4];
            return (total - idle, total);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return null;
        }
    }
}

/// <summary>CPU use over one measured phase, as shares of all cores' time.</summary>
/// <param name="MachineBusy">Share of the machine's CPU time that was busy, whoever used it.</param>
/// <param name="Own">Share used by this program and the server it started.</param>
/// <param name="Others">Share used by every other process: near 0 on a quiet machine.</param>
public readonly record struct PhaseLoad(double MachineBusy, double Own, double Others);

/// <summary>A phase being watched; <see cref="Stop"/> gives its <see cref="PhaseLoad"/>.</summary>
public sealed class PhaseWatch
{
    private readonly Func<TimeSpan> _ownCpuTime;
    private readonly (long Busy, long Total)? _stat;
    private readonly TimeSpan _ownStart;
    private readonly long _startedAt;

    internal PhaseWatch(Func<TimeSpan> ownCpuTime)
    {
        _ownCpuTime = ownCpuTime;
        _stat = MachineLoad.ReadProcStat();
        _ownStart = ownCpuTime();
        _startedAt = Stopwatch.GetTimestamp();
    }

    /// <summary>Ends the phase. Shares are NaN where /proc/stat cannot be read.</summary>
    public PhaseLoad Stop()
    {
        var own = _ownCpuTime() - _ownStart;
        var elapsed = Stopwatch.GetElapsedTime(_startedAt);
        var end = MachineLoad.ReadProcStat();
        if (_stat is not { } start || end is not { } stop || stop.Total <= start.Total)
        {
            return new PhaseLoad(double.NaN, double.NaN, double.NaN);
        }

        var busy = (double)(stop.Busy - start.Busy) / (stop.Total - start.Total);
        var ownShare = Math.Min(1, own.TotalSeconds / (elapsed.TotalSeconds * Environment.ProcessorCount));
        return new PhaseLoad(busy, ownShare, Math.Max(0, busy - ownShare));
    }
}
