// Each test runs real servers that load ONNX models on a 2-core machine: one at a time keeps timings sane.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
