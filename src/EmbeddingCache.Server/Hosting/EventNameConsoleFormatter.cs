using System.Globalization;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;

namespace EmbeddingCache.Server.Hosting;

/// <summary>
/// One line per event, as the simple console formatter writes it, plus the event's stable name, so that the
/// names the README promises (<c>QuarantinedFile</c>, <c>ModelChanged</c>, ...) can be grepped for:
/// <c>2026-01-15T10:30:00.000Z warn: EmbeddingCache.Storage[1007] QuarantinedFile: Quarantined ...</c>.
/// </summary>
internal sealed class EventNameConsoleFormatter() : ConsoleFormatter(FormatterName)
{
    public const string FormatterName = "embcache";

    public override void Write<TState>(in LogEntry<TState> logEntry, IExternalScopeProvider? scopeProvider, TextWriter textWriter)
    {
        var message = logEntry.Formatter?.Invoke(logEntry.State, logEntry.Exception);
        if (message is null && logEntry.Exception is null) return;
        textWriter.Write(DateTimeOffset.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z' ", CultureInfo.InvariantCulture));
        textWriter.Write(LevelName(logEntry.LogLevel));
        textWriter.Write(": ");
        textWriter.Write(logEntry.Category);
        textWriter.Write('[');
        textWriter.Write(logEntry.EventId.Id.ToString(CultureInfo.InvariantCulture));
        textWriter.Write(']');
        if (!string.IsNullOrEmpty(logEntry.EventId.Name))
        {
            textWriter.Write(' ');
            textWriter.Write(logEntry.EventId.Name);
            textWriter.Write(':');
        }
        // Single line, like the simple formatter's SingleLine mode: one event, one grep hit.
        textWriter.Write(' ');
        textWriter.Write(message?.ReplaceLineEndings(" "));
        if (logEntry.Exception is not null)
        {
            textWriter.Write(' ');
            textWriter.Write(logEntry.Exception.ToString().ReplaceLineEndings(" "));
        }
        textWriter.WriteLine();
    }

    private static string LevelName(LogLevel level) => level switch
    {
        LogLevel.Trace => "trce",
        LogLevel.Debug => "dbug",
        LogLevel.Information => "info",
        LogLevel.Warning => "warn",
        LogLevel.Error => "fail",
        LogLevel.Critical => "crit",
        _ => "none",
    };
}
