using EmbeddingCache.Engine;
using Microsoft.Extensions.Options;

namespace EmbeddingCache.Server.Hosting;

/// <summary>
/// Checks the server's and the engine's settings at start-up, each problem naming the setting, its value and what
/// it must be; <see cref="ServerHost.RunAsync"/> prints them and exits. Registered for the options the container
/// binds, and called by <see cref="ServerHost.Build"/> before Kestrel is configured from the same settings.
/// </summary>
internal sealed class SettingsValidator : IValidateOptions<EngineOptions>, IValidateOptions<ServerOptions>
{
    public ValidateOptionsResult Validate(string? name, EngineOptions options) => Result(options.Problems());

    public ValidateOptionsResult Validate(string? name, ServerOptions options) => Result(options.Problems());

    /// <summary>Throws <see cref="OptionsValidationException"/> listing every problem of both, if there is any.</summary>
    public static void ThrowIfInvalid(EngineOptions engine, ServerOptions server)
    {
        var problems = engine.Problems().Concat(server.Problems()).ToList();
        if (problems.Count > 0)
        {
            throw new OptionsValidationException(ServerOptions.Section, typeof(ServerOptions), problems);
        }
    }

    private static ValidateOptionsResult Result(IEnumerable<string> problems)
    {
        var all = problems.ToList();
        return all.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(all);
    }
}
