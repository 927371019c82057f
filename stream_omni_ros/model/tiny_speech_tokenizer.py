"""Random stand-ins for CosyVoice's `speech_tokenizer_v1.onnx` (25 Hz): tiny ones for tests, a
full-size one for latency benchmarks.

Same signature as the real file: inputs (mel [1, 128, F] float32, length [1] int32), output unit
ids [1, T] int64 with T = ((F - 1) // 2 + 1 - 1) // 2 + 1. Inside, the S3 tokenizer v1 structure
(a Whisper-style encoder): two stride-2 convolutions with GELU, sinusoidal positions,
bidirectional pre-LN transformer blocks, L2 normalisation and the nearest codebook entry.
FULL_SHAPE has the real file's sizes (1280 wide, 20 heads, 6 blocks, MLP x4, 4096 entries, 1500
positions: about 131 M weights, 0.5 GB), so it costs what the real one costs; TINY_SHAPE is one
32-wide block with 32 entries and a LayerNorm before quantising, so that random units follow the
spectrum. Built with the `onnx` helper API so no exporter is needed.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

N_MELS = 128
OPSET = 20  # Gelu is an ONNX operator from opset 20 on
FILE_NAME = "speech_tokenizer_v1.onnx"


@dataclass(frozen=True)
class TokenizerShape:
    """Sizes of a random speech tokenizer and the two places where the tiny one differs."""

    width: int
    heads: int
    layers: int
    codebook_size: int
    mlp_ratio: int
    positions: int  # rows of the sinusoidal table (>= 750 units of a 30-s block)
    biases: bool  # query, value, output and MLP biases, as the real encoder has
    final_norm: bool  # a LayerNorm before quantising (tiny: centres the random frames)
    front_gain: float = 1.0  # gain of the first convolution (the second: its square root)


TINY_SHAPE = TokenizerShape(width=32, heads=2, layers=1, codebook_size=32, mlp_ratio=2,
                            positions=1024, biases=False, final_norm=True)
# A trained front end turns the 0.2-rms log-mel into O(1) features; with plain 1/sqrt(fan_in)
# filters the sinusoidal positions would dominate and the units would follow the frame index
# instead of the sound. The gain keeps the full-size units driven by the audio.
FULL_SHAPE = TokenizerShape(width=1280, heads=20, layers=6, codebook_size=4096, mlp_ratio=4,
                            positions=1500, biases=True, final_norm=False, front_gain=8.0)


def _sinusoids(length: int, channels: int) -> np.ndarray:
    """Whisper-style sinusoidal position table [length, channels]."""
    half = channels // 2
    rates = np.exp(-np.log(10000.0) / (half - 1) * np.arange(half))
    angles = np.arange(length)[:, None] * rates[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)


def _weights(rng: np.random.Generator, shape: TokenizerShape) -> dict[str, np.ndarray]:
    """Random initialisers, scaled so activations stay O(1)."""
    def normal(*dims: int) -> np.ndarray:
        """Gaussian weights with 1/sqrt(fan_in) scale."""
        fan_in = int(np.prod(dims[1:])) if len(dims) == 3 else dims[0]
        return (rng.standard_normal(dims) / np.sqrt(fan_in)).astype(np.float32)

    width, hidden = shape.width, shape.mlp_ratio * shape.width
    codebook = rng.standard_normal((shape.codebook_size, width))
    # Unit-norm entries: frames are unit vectors too, so no entry wins by its length alone.
    codebook = (codebook / np.linalg.norm(codebook, axis=1, keepdims=True)).astype(np.float32)
    conv1 = normal(width, N_MELS, 3)
    # Zero-mean filters: the log-mel's large common offset would otherwise map every frame to
    # the same unit; this way the units follow the spectrum as real ones do.
    conv1 -= conv1.mean(axis=(1, 2), keepdims=True)
    tensors = {"conv1.weight": conv1 * shape.front_gain,
               "conv1.bias": np.zeros(width, np.float32),
               "conv2.weight": normal(width, width, 3) * shape.front_gain ** 0.5,
               "conv2.bias": np.zeros(width, np.float32),
               "positions": _sinusoids(shape.positions, width)}
    for layer in range(shape.layers):
        p = f"blocks.{layer}."
        tensors.update({p + "ln1.weight": np.ones(width, np.float32),
                        p + "ln1.bias": np.zeros(width, np.float32),
                        p + "attn.q": normal(width, width), p + "attn.k": normal(width, width),
                        p + "attn.v": normal(width, width),
                        p + "attn.out": normal(width, width),
                        p + "ln2.weight": np.ones(width, np.float32),
                        p + "ln2.bias": np.zeros(width, np.float32),
                        p + "mlp.fc1": normal(width, hidden),
                        p + "mlp.fc2": normal(hidden, width)})
        if shape.biases:  # the key projection has no bias in the real encoder
            for name, size in (("attn.q", width), ("attn.v", width), ("attn.out", width),
                               ("mlp.fc1", hidden), ("mlp.fc2", width)):
                tensors[f"{p}{name}.bias"] = (0.02 * rng.standard_normal(size)).astype(
                    np.float32)
    tensors.update({"ln_out.weight": np.ones(width, np.float32),
                    "ln_out.bias": np.zeros(width, np.float32),
                    "codebook.t": np.ascontiguousarray(codebook.T),
                    "codebook.sq_norm": (codebook**2).sum(axis=1).astype(np.float32)})
    if not shape.final_norm:
        del tensors["ln_out.weight"], tensors["ln_out.bias"]
    return tensors


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


def _linear(x: str, weight: str, out: str, bias: bool) -> list[onnx.NodeProto]:
    """x @ weight (+ weight.bias)."""
    if not bias:
        return [helper.make_node("MatMul", [x, weight], [out])]
    return [helper.make_node("MatMul", [x, weight], [out + ".nobias"]),
            helper.make_node("Add", [out + ".nobias", weight + ".bias"], [out])]


def _block_nodes(p: str, x: str, out: str, biases: bool) -> list[onnx.NodeProto]:
    """One bidirectional pre-LN self-attention + MLP block on [1, T, C] named with prefix p."""
    node = helper.make_node
    nodes = [node("LayerNormalization", [x, p + "ln1.weight", p + "ln1.bias"], [p + "h"],
                  axis=-1)]
    for name in ("q", "k", "v"):
        nodes += _linear(p + "h", f"{p}attn.{name}", f"{p}{name}.flat", biases and name != "k")
        nodes.append(node("Reshape", [f"{p}{name}.flat", "heads.shape"], [f"{p}{name}.split"]))
    nodes += [
        node("Transpose", [p + "q.split"], [p + "q"], perm=[0, 2, 1, 3]),  # [1, heads, T, d]
        node("Transpose", [p + "k.split"], [p + "kt"], perm=[0, 2, 3, 1]),  # [1, heads, d, T]
        node("Transpose", [p + "v.split"], [p + "v"], perm=[0, 2, 1, 3]),
        node("MatMul", [p + "q", p + "kt"], [p + "scores.raw"]),
        node("Mul", [p + "scores.raw", "attn.scale"], [p + "scores"]),
        node("Softmax", [p + "scores"], [p + "probs"], axis=-1),
        node("MatMul", [p + "probs", p + "v"], [p + "ctx.split"]),
        node("Transpose", [p + "ctx.split"], [p + "ctx.t"], perm=[0, 2, 1, 3]),  # [1,T,heads,d]
        node("Reshape", [p + "ctx.t", "merge.shape"], [p + "ctx"]),  # [1, T, C]
    ]
    nodes += _linear(p + "ctx", p + "attn.out", p + "attn", biases)
    nodes += [node("Add", [x, p + "attn"], [p + "x1"]),
              node("LayerNormalization", [p + "x1", p + "ln2.weight", p + "ln2.bias"],
                   [p + "h2"], axis=-1)]
    nodes += _linear(p + "h2", p + "mlp.fc1", p + "m1", biases)
    nodes.append(node("Gelu", [p + "m1"], [p + "m1.act"]))
    nodes += _linear(p + "m1.act", p + "mlp.fc2", p + "m2", biases)
    nodes.append(node("Add", [p + "x1", p + "m2"], [out]))
    return nodes


def _quantizer_nodes(x: str, final_norm: bool) -> list[onnx.NodeProto]:
    """L2-normalise frames and pick the nearest codebook entry (Euclidean)."""
    node = helper.make_node
    nodes = []
    if final_norm:
        # Centre each frame first so the GELU's positive bias does not pick one entry for all.
        nodes.append(node("LayerNormalization", [x, "ln_out.weight", "ln_out.bias"], ["x.out"],
                          axis=-1))
        x = "x.out"
    return nodes + [
        node("ReduceL2", [x, "last_axis"], ["x.norm"], keepdims=1),
        node("Max", ["x.norm", "eps"], ["x.safe_norm"]),
        node("Div", [x, "x.safe_norm"], ["unit_vectors"]),
        node("MatMul", ["unit_vectors", "codebook.t"], ["dots"]),  # [1, T, K]
        node("Mul", ["dots", "minus_two"], ["dots2"]),
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2 and |x| = 1 for every frame
        node("Add", ["dots2", "codebook.sq_norm"], ["distances"]),
        node("ArgMin", ["distances"], ["indices"], axis=-1, keepdims=0),
    ]


def build_speech_tokenizer(shape: TokenizerShape = TINY_SHAPE,
                           seed: int = 0) -> onnx.ModelProto:
    """A random tokenizer of this shape as an in-memory ONNX model (deterministic for a seed)."""
    width, heads = shape.width, shape.heads
    tensors = _weights(np.random.default_rng(seed), shape)
    tensors.update({
        "zero": np.array([0], np.int64), "one": np.array([1], np.int64),
        "two": np.array([2], np.int64), "last_axis": np.array([-1], np.int64),
        "heads.shape": np.array([0, -1, heads, width // heads], np.int64),
        "merge.shape": np.array([0, -1, width], np.int64),
        "attn.scale": np.array((width // heads) ** -0.5, np.float32),
        "eps": np.array(1e-6, np.float32), "minus_two": np.array(-2.0, np.float32),
    })
    nodes, x = _front_nodes(), "x"
    for layer in range(shape.layers):
        nodes += _block_nodes(f"blocks.{layer}.", x, f"blocks.{layer}.out", shape.biases)
        x = f"blocks.{layer}.out"
    graph = helper.make_graph(
        nodes + _quantizer_nodes(x, shape.final_norm),
        "random_speech_tokenizer_v1",
        [helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, N_MELS, "F"]),
         helper.make_tensor_value_info("feats_length", TensorProto.INT32, [1])],
        [helper.make_tensor_value_info("indices", TensorProto.INT64, [1, "T"])],
        initializer=[numpy_helper.from_array(array, name) for name, array in tensors.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9  # readable by every onnxruntime this project pins
    onnx.checker.check_model(model)
    return model


def build_tiny_speech_tokenizer(codebook_size: int = 32, seed: int = 0) -> onnx.ModelProto:
    """The tiny test tokenizer as an in-memory ONNX model."""
    return build_speech_tokenizer(replace(TINY_SHAPE, codebook_size=codebook_size), seed)


def _target(path: str | Path) -> Path:
    """`path` itself if it names a .onnx file, else the real file name inside that folder."""
    target = Path(path)
    if target.suffix != ".onnx":
        target = target / FILE_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def write_tiny_speech_tokenizer(
    path: str | Path, codebook_size: int = 32, seed: int = 0
) -> Path:
    """Write the tiny tokenizer to `path` (a .onnx file, or a folder to put it in)."""
    target = _target(path)
    onnx.save(build_tiny_speech_tokenizer(codebook_size=codebook_size, seed=seed), str(target))
    return target


def write_full_speech_tokenizer(path: str | Path, seed: int = 0) -> Path:
    """Write a random tokenizer of the real one's size (0.5 GB) to `path` (file or folder)."""
    target = _target(path)
    onnx.save(build_speech_tokenizer(FULL_SHAPE, seed), str(target))
    return target
