"""A tiny random stand-in for CosyVoice's `speech_tokenizer_v1.onnx` (25 Hz), for tests.

Same signature as the real file: inputs (mel [1, 128, F] float32, length [1] int32), output unit
ids [1, T] int64 with T = ((F - 1) // 2 + 1 - 1) // 2 + 1. Inside: two stride-2 convolutions with
GELU, sinusoidal positions, one bidirectional pre-LN transformer block, L2 normalisation and the
nearest codebook entry. Built with the `onnx` helper API so no exporter is needed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

N_MELS = 128
OPSET = 20  # Gelu is an ONNX operator from opset 20 on
MAX_UNIT_FRAMES = 1024  # > 750 units of a 30-s block


def _sinusoids(length: int, channels: int) -> np.ndarray:
    """Whisper-style sinusoidal position table [length, channels]."""
    half = channels // 2
    rates = np.exp(-np.log(10000.0) / (half - 1) * np.arange(half))
    angles = np.arange(length)[:, None] * rates[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)


def _weights(rng: np.random.Generator, width: int, codebook_size: int) -> dict[str, np.ndarray]:
    """Random initialisers, scaled so activations stay O(1)."""
    def normal(*shape: int) -> np.ndarray:
        """Gaussian weights with 1/sqrt(fan_in) scale."""
        fan_in = int(np.prod(shape[1:])) if len(shape) == 3 else shape[0]
        return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)

    codebook = rng.standard_normal((codebook_size, width))
    # Unit-norm entries: frames are unit vectors too, so no entry wins by its length alone.
    codebook = (codebook / np.linalg.norm(codebook, axis=1, keepdims=True)).astype(np.float32)
    conv1 = normal(width, N_MELS, 3)
    # Zero-mean filters: the log-mel's large common offset would otherwise map every frame to
    # the same unit; this way the units follow the spectrum as real ones do.
    conv1 -= conv1.mean(axis=(1, 2), keepdims=True)
    return {
        "conv1.weight": conv1, "conv1.bias": np.zeros(width, np.float32),
        "conv2.weight": normal(width, width, 3), "conv2.bias": np.zeros(width, np.float32),
        "positions": _sinusoids(MAX_UNIT_FRAMES, width),
        "ln1.weight": np.ones(width, np.float32), "ln1.bias": np.zeros(width, np.float32),
        "attn.q": normal(width, width), "attn.k": normal(width, width),
        "attn.v": normal(width, width), "attn.out": normal(width, width),
        "ln2.weight": np.ones(width, np.float32), "ln2.bias": np.zeros(width, np.float32),
        "mlp.fc1": normal(width, 2 * width), "mlp.fc2": normal(2 * width, width),
        "ln_out.weight": np.ones(width, np.float32),
        "ln_out.bias": np.zeros(width, np.float32),
        "codebook.t": np.ascontiguousarray(codebook.T),
        "codebook.sq_norm": (codebook**2).sum(axis=1).astype(np.float32),
    }


def _front_nodes() -> list[onnx.NodeProto]:
    """Two stride-2 convs + GELU, then [1, C, T] -> [1, T, C] plus positions."""
    node = helper.make_node
    conv = {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}
    return [
        node("Conv", ["feats", "conv1.weight", "conv1.bias"], ["c1"], **conv),
        node("Gelu", ["c1"], ["g1"]),
        node("Conv", ["g1", "conv2.weight", "conv2.bias"], ["c2"], **conv),
        node("Gelu", ["c2"], ["g2"]),
        node("Transpose", ["g2"], ["x0"], perm=[0, 2, 1]),
        node("Shape", ["x0"], ["x0.shape"]),
        node("Slice", ["x0.shape", "one", "two"], ["frames"]),
        node("Slice", ["positions", "zero", "frames", "zero"], ["pos"]),
        node("Add", ["x0", "pos"], ["x"]),
    ]


def _block_nodes() -> list[onnx.NodeProto]:
    """One bidirectional pre-LN self-attention + MLP block on [1, T, C] (heads: see shapes)."""
    node = helper.make_node
    nodes = [node("LayerNormalization", ["x", "ln1.weight", "ln1.bias"], ["h"], axis=-1)]
    for name in ("q", "k", "v"):
        nodes += [node("MatMul", ["h", f"attn.{name}"], [f"{name}.flat"]),
                  node("Reshape", [f"{name}.flat", "heads.shape"], [f"{name}.split"])]
    nodes += [
        node("Transpose", ["q.split"], ["q"], perm=[0, 2, 1, 3]),  # [1, heads, T, d]
        node("Transpose", ["k.split"], ["kt"], perm=[0, 2, 3, 1]),  # [1, heads, d, T]
        node("Transpose", ["v.split"], ["v"], perm=[0, 2, 1, 3]),
        node("MatMul", ["q", "kt"], ["scores.raw"]),
        node("Mul", ["scores.raw", "attn.scale"], ["scores"]),
        node("Softmax", ["scores"], ["probs"], axis=-1),
        node("MatMul", ["probs", "v"], ["ctx.split"]),
        node("Transpose", ["ctx.split"], ["ctx.t"], perm=[0, 2, 1, 3]),  # [1, T, heads, d]
        node("Reshape", ["ctx.t", "merge.shape"], ["ctx"]),  # [1, T, C]
        node("MatMul", ["ctx", "attn.out"], ["attn"]),
        node("Add", ["x", "attn"], ["x1"]),
        node("LayerNormalization", ["x1", "ln2.weight", "ln2.bias"], ["h2"], axis=-1),
        node("MatMul", ["h2", "mlp.fc1"], ["m1"]),
        node("Gelu", ["m1"], ["m1.act"]),
        node("MatMul", ["m1.act", "mlp.fc2"], ["m2"]),
        node("Add", ["x1", "m2"], ["x2"]),
    ]
    return nodes


def _quantizer_nodes() -> list[onnx.NodeProto]:
    """L2-normalise frames and pick the nearest codebook entry (Euclidean)."""
    node = helper.make_node
    return [
        # Centre each frame first so the GELU's positive bias does not pick one entry for all.
        node("LayerNormalization", ["x2", "ln_out.weight", "ln_out.bias"], ["x3"], axis=-1),
        node("ReduceL2", ["x3", "last_axis"], ["x3.norm"], keepdims=1),
        node("Max", ["x3.norm", "eps"], ["x3.safe_norm"]),
        node("Div", ["x3", "x3.safe_norm"], ["unit_vectors"]),
        node("MatMul", ["unit_vectors", "codebook.t"], ["dots"]),  # [1, T, K]
        node("Mul", ["dots", "minus_two"], ["dots2"]),
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2 and |x| = 1 for every frame
        node("Add", ["dots2", "codebook.sq_norm"], ["distances"]),
        node("ArgMin", ["distances"], ["indices"], axis=-1, keepdims=0),
    ]


def build_tiny_speech_tokenizer(
    codebook_size: int = 32, width: int = 32, heads: int = 2, seed: int = 0
) -> onnx.ModelProto:
    """The tiny tokenizer as an in-memory ONNX model (deterministic for a seed)."""
    tensors = _weights(np.random.default_rng(seed), width, codebook_size)
    tensors.update({
        "zero": np.array([0], np.int64), "one": np.array([1], np.int64),
        "two": np.array([2], np.int64), "last_axis": np.array([-1], np.int64),
        "heads.shape": np.array([0, -1, heads, width // heads], np.int64),
        "merge.shape": np.array([0, -1, width], np.int64),
        "attn.scale": np.array((width // heads) ** -0.5, np.float32),
        "eps": np.array(1e-6, np.float32), "minus_two": np.array(-2.0, np.float32),
    })
    graph = helper.make_graph(
        _front_nodes() + _block_nodes() + _quantizer_nodes(),
        "tiny_speech_tokenizer_v1",
        [helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, N_MELS, "F"]),
         helper.make_tensor_value_info("feats_length", TensorProto.INT32, [1])],
        [helper.make_tensor_value_info("indices", TensorProto.INT64, [1, "T"])],
        initializer=[numpy_helper.from_array(array, name) for name, array in tensors.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9  # readable by every onnxruntime this project pins
    onnx.checker.check_model(model)
    return model


def write_tiny_speech_tokenizer(
    path: str | Path, codebook_size: int = 32, seed: int = 0
) -> Path:
    """Write the tiny tokenizer to `path` (a .onnx file, or a folder to put it in)."""
    target = Path(path)
    if target.suffix != ".onnx":
        target = target / "speech_tokenizer_v1.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(build_tiny_speech_tokenizer(codebook_size=codebook_size, seed=seed), str(target))
    return target
