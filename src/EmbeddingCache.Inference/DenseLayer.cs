using System.Numerics.Tensors;

namespace EmbeddingCache.Inference;

/// <summary>The activation of a Dense module, from its config's <c>activation_function</c> (a torch.nn class name).</summary>
public enum DenseActivation
{
    /// <summary><c>torch.nn.modules.linear.Identity</c>: none.</summary>
    Identity,

    /// <summary><c>torch.nn.modules.activation.Tanh</c>: sentence-transformers' default.</summary>
    Tanh,

    /// <summary><c>torch.nn.modules.activation.ReLU</c>.</summary>
    ReLU,

    /// <summary><c>torch.nn.modules.activation.Sigmoid</c>.</summary>
    Sigmoid,
}

/// <summary>
/// A sentence-transformers Dense module: <c>activation(W x + b)</c> on the sentence vector, with W of
/// <c>out_features x in_features</c> and b from the module folder's <c>model.safetensors</c> (<c>linear.weight</c>,
/// <c>linear.bias</c>). It changes the vector's width, so the cache's dims follow the last one.
/// </summary>
public sealed class DenseLayer
{
    internal DenseLayer(string folder, string weightsPath, int inFeatures, int outFeatures, DenseActivation activation, float[] weight, float[]? bias)
    {
        Folder = folder;
        WeightsPath = weightsPath;
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        Activation = activation;
        Weight = weight;
        Bias = bias;
    }

    /// <summary>The module's folder relative to the model folder, as modules.json names it (e.g. <c>2_Dense</c>).</summary>
    public string Folder { get; }

    /// <summary>The full path of the weights file, which the fingerprint covers.</summary>
    public string WeightsPath { get; }

    /// <summary>The width of the vector it takes.</summary>
    public int InFeatures { get; }

    /// <summary>The width of the vector it gives.</summary>
    public int OutFeatures { get; }

    /// <summary>The function applied after the linear map.</summary>
    public DenseActivation Activation { get; }

    /// <summary>W, row-major, <see cref="OutFeatures"/> rows of <see cref="InFeatures"/>.</summary>
    internal float[] Weight { get; }

    /// <summary>b, or null for a module without bias.</summary>
    internal float[]? Bias { get; }

    /// <summary>How ListModels shows it, e.g. <c>2_Dense 384->256 tanh</c>.</summary>
    public override string ToString() => $"{Folder} {InFeatures}->{OutFeatures} {Activation.ToString().ToLowerInvariant()}";

    /// <summary>Writes <c>activation(W input + b)</c> to <paramref name="output"/> (<see cref="OutFeatures"/> floats).</summary>
    internal void Apply(ReadOnlySpan<float> input, Span<float> output)
    {
        for (var o = 0; o < OutFeatures; o++)
        {
            output[o] = TensorPrimitives.Dot(Weight.AsSpan(o * InFeatures, InFeatures), input) + (Bias is null ? 0 : Bias[o]);
        }

        var result = output.Slice(0, OutFeatures);
        switch (Activation)
        {
            case DenseActivation.Tanh:
                TensorPrimitives.Tanh(result, result);
                break;
            case DenseActivation.ReLU:
                TensorPrimitives.Max(result, 0f, result);
                break;
            case DenseActivation.Sigmoid:
                TensorPrimitives.Sigmoid(result, result);
                break;
        }
    }
}
