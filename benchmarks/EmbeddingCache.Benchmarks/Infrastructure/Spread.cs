using System.Globalization;
using MathNet.Numerics.Statistics;

namespace EmbeddingCache.Benchmarks.Infrastructure;

/// <summary>The median of repeated measurements and how far they spread (min–max, and the IQR from 4 on).</summary>
public readonly record struct Spread(double Median, double Min, double Max, double InterquartileRange, int Count)
{
    /// <summary>Summarises <paramref name="values"/>; NaN values (a scenario that was skipped) are left out.</summary>
    public static Spread Of(IEnumerable<double> values)
    {
        var kept = values.Where(value => !double.IsNaN(value)).ToArray();
        if (kept.Length == 0)
        {
            return new Spread(double.NaN, double.NaN, double.NaN, double.NaN, 0);
        }

        return new Spread(
            kept.Median(),
            kept.Minimum(),
            kept.Maximum(),
            kept.Length >= 4 ? kept.InterquartileRange() : double.NaN,
            kept.Length);
    }

    /// <summary>"min–max" with <paramref name="format"/>, plus the IQR when there are enough repetitions to have one.</summary>
    public string Range(string format)
    {
        if (Count == 0)
        {
            return "–";
        }

        var range = $"{Min.ToString(format, CultureInfo.InvariantCulture)}–{Max.ToString(format, CultureInfo.InvariantCulture)}";
        return double.IsNaN(InterquartileRange) ? range : $"{range} (IQR {InterquartileRange.ToString(format, CultureInfo.InvariantCulture)})";
    }
}
