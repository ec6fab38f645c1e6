"""Model folders for the export tests, made and checked independently of the server, with numpy and python3-onnx.

  make-dense FOLDER IN OUT ACTIVATION WEIGHT_DTYPE BIAS_DTYPE SEED
      a sentence-transformers Dense module folder: config.json and model.safetensors (seeded random weights)
  pool-graph SRC DST      SRC's graph plus a masked mean of last_hidden_state, output as `sentence_embedding`
  negate-graph SRC DST    SRC's graph with last_hidden_state negated (a variant whose vectors tell it apart)
  expect HIDDEN PIPELINE OUT
      the sentence vectors of the raw hidden states HIDDEN (hidden.f32 and lengths.json, one text at a time,
      unpadded) through PIPELINE (JSON: pooling, dense folders, normalize), as sentence-transformers computes
      them, saved to OUT with np.save
"""
import json
import struct
import sys

import numpy as np

ACTIVATIONS = {
    "tanh": ("torch.nn.modules.activation.Tanh", np.tanh),
    "identity": ("torch.nn.modules.linear.Identity", lambda x: x),
    "relu": ("torch.nn.modules.activation.ReLU", lambda x: np.maximum(x, 0)),
}


def bf16_bits(values):
    """bfloat16 as the upper half of each float32, rounded to nearest even."""
    bits = values.astype("<f4").view("<u4").astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype("<u2")


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, (dtype, array) in tensors.items():
        if dtype == "F32":
            blob = array.astype("<f4").tobytes()
        elif dtype == "F16":
            blob = array.astype("<f2").tobytes()
        else:
            blob = bf16_bits(array).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    header["__metadata__"] = {"format": "pt"}
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for blob in blobs:
            f.write(blob)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    body = data[8 + length :]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        raw = body[begin:end]
        if entry["dtype"] == "F32":
            array = np.frombuffer(raw, "<f4")
        elif entry["dtype"] == "F16":
            array = np.frombuffer(raw, "<f2").astype(np.float32)
        elif entry["dtype"] == "BF16":
            array = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(entry["dtype"])
        tensors[name] = array.reshape(entry["shape"]).astype(np.float64)
    return tensors


def make_dense(folder, in_features, out_features, activation, weight_dtype, bias_dtype, seed):
    import os

    os.makedirs(folder, exist_ok=True)
    random = np.random.RandomState(int(seed))
    in_features, out_features = int(in_features), int(out_features)
    # As torch.nn.Linear initialises: uniform in +-1/sqrt(in_features).
    bound = 1 / np.sqrt(in_features)
    weight = random.uniform(-bound, bound, (out_features, in_features)).astype(np.float32)
    bias = random.uniform(-bound, bound, (out_features,)).astype(np.float32)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"in_features": in_features, "out_features": out_features, "bias": True,
                   "activation_function": ACTIVATIONS[activation][0]}, f)
    write_safetensors(os.path.join(folder, "model.safetensors"),
                      {"linear.weight": (weight_dtype, weight), "linear.bias": (bias_dtype, bias)})


def graph_with(src, dst, extend):
    import onnx
    from onnx import helper

    model = onnx.load(src)
    graph = model.graph
    extend(graph, helper, onnx.TensorProto)
    onnx.checker.check_model(model)
    onnx.save(model, dst)


def pool_graph(src, dst):
    def extend(graph, helper, TensorProto):
        graph.initializer.extend([
            helper.make_tensor("pool_axes_seq", TensorProto.INT64, [1], [1]),
            helper.make_tensor("pool_axes_last", TensorProto.INT64, [1], [2]),
            helper.make_tensor("pool_min_count", TensorProto.FLOAT, [], [1e-9]),
        ])
        graph.node.extend([
            helper.make_node("Cast", ["attention_mask"], ["pool_mask"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["pool_mask", "pool_axes_last"], ["pool_mask3"]),
            helper.make_node("Mul", ["last_hidden_state", "pool_mask3"], ["pool_masked"]),
            helper.make_node("ReduceSum", ["pool_masked", "pool_axes_seq"], ["pool_sum"], keepdims=0),
            helper.make_node("ReduceSum", ["pool_mask3", "pool_axes_seq"], ["pool_count"], keepdims=0),
            helper.make_node("Max", ["pool_count", "pool_min_count"], ["pool_count_clamped"]),
            helper.make_node("Div", ["pool_sum", "pool_count_clamped"], ["sentence_embedding"]),
        ])
        # An optimum export of a sentence-transformers model: token vectors and the pooled sentence vector.
        kept = [output for output in graph.output if output.name == "last_hidden_state"]
        del graph.output[:]
        graph.output.extend(kept)
        graph.output.extend([helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", 384])])

    graph_with(src, dst, extend)


def negate_graph(src, dst):
    def extend(graph, helper, TensorProto):
        for node in graph.node:
            node.output[:] = ["negate_input" if name == "last_hidden_state" else name for name in node.output]
            node.input[:] = ["negate_input" if name == "last_hidden_state" else name for name in node.input]
        graph.node.extend([helper.make_node("Neg", ["negate_input"], ["last_hidden_state"])])

    graph_with(src, dst, extend)


def pool(mode, tokens):
    """sentence-transformers' Pooling on one unpadded text: every token is under the mask."""
    length = tokens.shape[0]
    if mode == "mean":
        return tokens.sum(0) / max(length, 1e-9)
    if mode == "mean_sqrt_len_tokens":
        return tokens.sum(0) / np.sqrt(max(length, 1e-9))
    if mode == "cls":
        return tokens[0]
    if mode == "max":
        return tokens.max(0)
    if mode == "lasttoken":
        return tokens[length - 1]
    if mode == "weightedmean":
        weights = np.arange(1, length + 1, dtype=np.float64)[:, None]
        return (tokens * weights).sum(0) / weights.sum()
    raise ValueError(mode)


def expect(hidden_dir, pipeline_json, out):
    pipeline = json.loads(pipeline_json)
    lengths = json.load(open(f"{hidden_dir}/lengths.json"))
    hidden = np.fromfile(f"{hidden_dir}/hidden.f32", "<f4").astype(np.float64)
    dense = []
    for folder in pipeline.get("dense", []):
        config = json.load(open(f"{folder}/config.json"))
        tensors = read_safetensors(f"{folder}/model.safetensors")
        activation = next(f for name, f in ACTIVATIONS.values() if name == config["activation_function"])
        dense.append((tensors["linear.weight"], tensors["linear.bias"], activation))
    rows, offset = [], 0
    for length in lengths:
        tokens = hidden[offset : offset + length * 384].reshape(length, 384)
        offset += length * 384
        vector = pool(pipeline["pooling"], tokens)
        for weight, bias, activation in dense:
            vector = activation(weight @ vector + bias)
        if pipeline.get("normalize"):
            vector = vector / max(np.linalg.norm(vector), 1e-12)
        rows.append(vector)
    np.save(out, np.array(rows, dtype="<f4"))


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"make-dense": make_dense, "pool-graph": pool_graph, "negate-graph": negate_graph, "expect": expect}[command](*args)
