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

    /// <summary>
    /// CPU time of process <paramref name="processId"/> and every live descendant, including children they already
    /// reaped (from <c>/proc/*/stat</c>): the cost of a tree of client processes. Zero where /proc cannot be read.
    /// </summary>
    public static TimeSpan ProcessTreeCpuTime(int processId)
    {
        const double TicksPerSecond = 100; // USER_HZ, 100 on every Linux that .NET runs on
        var stats = new Dictionary<int, (int Parent, long Ticks)>();
        try
        {
            foreach (var folder in Directory.EnumerateDirectories("/proc"))
            {
                if (!int.TryParse(Path.GetFileName(folder), NumberStyles.Integer, CultureInfo.InvariantCulture, out var pid))
                {
                    continue;
                }

                try
                {
                    var text = File.ReadAllText(Path.Combine(folder, "stat"));
                    var fields = text[(text.LastIndexOf(')') + 2)..].Split(' ');
                    // After the name: state ppid ... utime(11) stime(12) cutime(13) cstime(14), counted from state = 0.
                    var ticks = long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)
                                + long.Parse(fields[13], CultureInfo.InvariantCulture) + long.Parse(fields[14], CultureInfo.InvariantCulture);
                    stats[pid] = (int.Parse(fields[1], CultureInfo.InvariantCulture), ticks);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException or ArgumentOutOfRangeException)
                {
                    // The process ended while we looked.
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return TimeSpan.Zero;
        }

        long total = 0;
        foreach (var (pid, (_, ticks)) in stats)
        {
            for (var ancestor = pid; ancestor > 1 && stats.TryGetValue(ancestor, out var entry); ancestor = entry.Parent)
            {
                if (ancestor == processId)
                {
                    total += ticks;
                    break;
                }
            }
        }

        return TimeSpan.FromSeconds(total / TicksPerSecond);
    }

    internal static (long Busy, long Total, long Steal)? ReadProcStat()
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
            return (total - idle, total, ticks[7]);
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
/// <param name="Steal">Share the hypervisor gave to other machines while this one wanted to run (counted in busy).</param>
public readonly record struct PhaseLoad(double MachineBusy, double Own, double Others, double Steal);

/// <summary>A phase being watched; <see cref="Stop"/> gives its <see cref="PhaseLoad"/>.</summary>
public sealed class PhaseWatch
{
    private readonly Func<TimeSpan> _ownCpuTime;
    private readonly (long Busy, long Total, long Steal)? _stat;
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
            return new PhaseLoad(double.NaN, double.NaN, double.NaN, double.NaN);
        }

        var busy = (double)(stop.Busy - start.Busy) / (stop.Total - start.Total);
        var ownShare = Math.Min(1, own.TotalSeconds / (elapsed.TotalSeconds * Environment.ProcessorCount));
        var steal = (double)(stop.Steal - start.Steal) / (stop.Total - start.Total);
        return new PhaseLoad(busy, ownShare, Math.Max(0, busy - ownShare - steal), steal);
    }
}
