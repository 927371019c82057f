"""8-bit and 4-bit weights (bitsandbytes) load, generate and compile on the CPU.

The tiny checkpoint goes through the real loader in each setting. The one-layer checkpoint of
Stream-Omni-8B's widths with the tiny vocabulary (variant "fullwidth": 0.9 B parameters, 1.5 GB
in bf16; every quantized layer kind, vocabulary heads included, at width 4096) takes minutes on
a 2-core CPU, so it runs where STREAM_OMNI_FULL_WIDTH=1 is set or CUDA is present
(scripts/gpu_bench.sh sets it).
"""
import os

import pytest
import torch

from stream_omni_ros.engine.runtime_config import ModelConfig, RuntimeConfig
from stream_omni_ros.errors import ConfigError
from stream_omni_ros.bench import model_bench
from stream_omni_ros.model import memory
from stream_omni_ros.model.checkpoint import LoadOptions, load_stream_omni
from stream_omni_ros.model.events import GenerationEnd, SpeechUnits, TextDelta
from stream_omni_ros.model.compiled import CompiledDecodeConfig
from stream_omni_ros.model.generation import StreamOmniGenerator
from stream_omni_ros.model.request import SPEECH_IN, GenerationConfig, GenerationRequest
from stream_omni_ros.model.quantization import (NF4_BLOCK, QUANTIZED_HEADS, QUANTIZED_TABLES,
                                                chunk_rows, import_bitsandbytes, int8_rows,
                                                nf4_blocks, quantization_targets,
                                                quantize_model, stored_bytes)
from stream_omni_ros.model.tiny_checkpoint import write_tiny_checkpoint

CONFIG = GenerationConfig(max_new_tokens=6, max_new_units=8, mask_units=True,
                          ignore_stop_ids=True)
UNITS = (3, 3, 7, 1, 0, 31, 12, 12, 5)
KINDS = ("text_to_text", "text_to_speech", "speech_to_text", "speech_to_speech")
FULL_WIDTH = os.environ.get("STREAM_OMNI_FULL_WIDTH") == "1" or torch.cuda.is_available()
PARITY_STEPS = 16
PARITY_FLOOR = {"8bit": 0.75, "4bit": 0.5}  # random weights; broken scales give ~0


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny_quant"), variant="anyres")


def load(folder, quantization, dtype="fp32", device="cpu"):
    return load_stream_omni(str(folder), LoadOptions(device=device, dtype=dtype,
                                                     quantization=quantization,
                                                     local_files_only=True))


def run(generator, kind):
    """(text ids, units, end event) of one fixed-length request."""
    content = {"units": UNITS} if kind in SPEECH_IN else {"text": "What is this?"}
    events = list(generator.generate(GenerationRequest(kind, config=CONFIG, **content)))
    return ([e.token_id for e in events if isinstance(e, TextDelta)],
            [u for e in events if isinstance(e, SpeechUnits) for u in e.units], events[-1])


def weight_bytes(model, config):
    """Stored bytes of every part of the memory table, measured on the loaded modules."""
    measured = {}
    for name, prefixes in memory.model_parts(config).items():
        total = 0
        for prefix in prefixes:
            try:
                total += stored_bytes(model.get_submodule(prefix))
            except AttributeError:  # a bare parameter such as model.image_newline
                tensor = model.get_parameter(prefix)
                total += tensor.numel() * tensor.element_size()
        measured[name] = total
    return measured


def estimated_bytes(config, dtype, quantization):
    rows = memory.estimate(config, memory.Context(1, 1, 1), memory.Setting(dtype, quantization))
    return {row.name: row.bytes for row in rows}


@pytest.mark.parametrize("quantization", ["8bit", "4bit"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_tiny_checkpoint_loads_quantized_and_generates_every_kind(tiny_folder, quantization,
                                                                  dtype):
    loaded = load(tiny_folder, quantization, dtype)
    model = loaded.model
    names = {name for name, _ in quantization_targets(model)}
    assert set(QUANTIZED_HEADS + QUANTIZED_TABLES) <= names
    assert "model.embed_tokens" not in names  # the CTC soft mapping multiplies all of it
    assert model.lm_head.weight.dtype == (torch.int8 if quantization == "8bit" else torch.uint8)
    assert model.model.embed_tokens.weight.dtype == model.dtype
    generator = StreamOmniGenerator(loaded)
    for kind in KINDS:
        text_ids, units, end = run(generator, kind)
        assert isinstance(end, GenerationEnd), kind
        assert len(units) == (CONFIG.max_new_units if kind.endswith("speech") else 0), kind
        assert len(text_ids) >= 1, kind
    measured = weight_bytes(model, loaded.config)
    assert measured == {name: value for name, value in estimated_bytes(
        loaded.config, dtype, quantization).items() if name in measured}


@pytest.mark.parametrize("quantization", ["8bit", "4bit"])
def test_quantized_logits_stay_close_to_fp32(tiny_folder, quantization):
    reference, quantized = load(tiny_folder, "none").model, load(tiny_folder, quantization).model
    prompt = torch.arange(1, 17)[None]
    with torch.inference_mode():
        logits = [m.text_logits(m.llm_forward(m.embed_text(prompt), m.new_caches(16, 1).llm))
                  for m in (reference, quantized)]
    error = (logits[1] - logits[0]).abs().max() / logits[0].abs().max()
    assert error < (0.05 if quantization == "8bit" else 0.5)


def test_8bit_compiled_steps_give_eager_ids_on_cpu(tiny_folder):
    torch._dynamo.reset()
    loaded = load(tiny_folder, "8bit")
    compiled = StreamOmniGenerator(loaded, compiled=CompiledDecodeConfig(
        backend="aot_eager", capacity_multiple=64))
    eager = StreamOmniGenerator(loaded)
    for kind in ("text_to_text", "speech_to_speech"):
        assert run(compiled, kind)[:2] == run(eager, kind)[:2], kind
    torch._dynamo.reset()


def test_quantized_compiled_decode_is_refused_where_it_cannot_run():
    with pytest.raises(ConfigError, match="replay CUDA graphs"):
        RuntimeConfig(device="cuda", quantization="8bit",
                      model=ModelConfig(compile_decode=True))
    with pytest.raises(ConfigError, match="NF4 lookup tables"):
        RuntimeConfig(device="cpu", quantization="4bit",
                      model=ModelConfig(compile_decode=True))
    assert RuntimeConfig(device="cpu", quantization="8bit",
                         model=ModelConfig(compile_decode=True)).model.compile_decode


@pytest.mark.parametrize("shape", [(200, 96), (37, 64)])
def test_quantizing_by_chunks_of_rows_stores_what_bitsandbytes_stores_for_the_whole(shape):
    bnb = import_bitsandbytes()
    weight = torch.randn(shape, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    chunk = 2 * shape[1] + 1  # several chunks, the last one short
    assert chunk_rows(shape, chunk) < shape[0]
    whole = bnb.nn.Int8Params(weight.clone(), requires_grad=False,
                              has_fp16_weights=False).to("cpu")
    rows = int8_rows(bnb, weight, "cpu", chunk)
    assert torch.equal(rows.data, whole.data) and torch.equal(rows.SCB, whole.SCB)
    whole = bnb.nn.Params4bit(weight.clone(), requires_grad=False, quant_type="nf4",
                              compress_statistics=True, blocksize=NF4_BLOCK).to("cpu")
    blocks = nf4_blocks(bnb, weight, "cpu", chunk)
    assert torch.equal(blocks.data, whole.data)
    ours, theirs = blocks.quant_state, whole.quant_state
    for name in ("absmax", "offset", "code"):
        assert torch.equal(getattr(ours, name), getattr(theirs, name)), name
    assert torch.equal(ours.state2.absmax, theirs.state2.absmax)
    assert (ours.shape, ours.dtype, ours.blocksize) == (theirs.shape, theirs.dtype,
                                                        theirs.blocksize)


@pytest.fixture(scope="module")
def full_width_folder(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("full_width"), variant="fullwidth")


@pytest.fixture(scope="module")
def full_width_reference(full_width_folder):
    """(prompt, greedy ids) of the bf16 model: the parity reference of the quantized ones."""
    loaded = load(full_width_folder, "none", "bf16")
    assert loaded.model.lm_head.weight.shape == (loaded.config.text_vocab_size, 4096)
    prompt = model_bench.parity_prompt(loaded)
    reference = model_bench.greedy_ids(loaded.model, prompt, PARITY_STEPS)
    text_ids, units, end = run(StreamOmniGenerator(loaded), "speech_to_speech")
    assert len(units) == CONFIG.max_new_units and isinstance(end, GenerationEnd)
    return prompt, reference


@pytest.mark.full_width
@pytest.mark.skipif(not FULL_WIDTH, reason="minutes on a CPU: set STREAM_OMNI_FULL_WIDTH=1")
@pytest.mark.parametrize("quantization", ["8bit", "4bit"])
def test_one_layer_full_width_checkpoint_loads_quantized_to_the_estimate_and_generates(
        full_width_folder, full_width_reference, quantization):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    loaded = load(full_width_folder, quantization, "bf16", device)
    model = loaded.model
    assert {type(model.get_submodule(n)).__name__ for n in QUANTIZED_HEADS} == {
        "Linear8bitLt" if quantization == "8bit" else "Linear4bit"}
    assert model.lm_head.in_features == model.config.hidden_size == 4096
    measured = weight_bytes(model, loaded.config)
    estimated = estimated_bytes(loaded.config, "bf16", quantization)
    assert measured == {name: estimated[name] for name in measured}
    prompt, reference = full_width_reference
    figures = model_bench.parity(model, prompt.to(device), reference)
    print(f"{quantization} parity with bf16 over {PARITY_STEPS} steps: {figures}")
    assert figures["top1_agreement"] >= PARITY_FLOOR[quantization], figures
    text_ids, units, end = run(StreamOmniGenerator(loaded), "speech_to_speech")
    assert len(units) == CONFIG.max_new_units and isinstance(end, GenerationEnd)


def test_sharded_checkpoint_is_quantized_weight_by_weight_with_the_same_result(tmp_path):
    from stream_omni_ros.model.checkpoint import assign_weights, quantize_owner, read_checkpoint
    from stream_omni_ros.model.stream_omni import StreamOmniForCausalLM

    folder = write_tiny_checkpoint(tmp_path / "sharded", "novision")
    _, files, sources, _, config = read_checkpoint(str(folder), LoadOptions())
    assert len(set(files.values())) > 1
    with torch.device("meta"):
        model = StreamOmniForCausalLM(config)
    seen = []

    def after_tensor(key):
        quantize_owner(model, "8bit", "cpu", torch.float32, key)
        seen.append(sum(type(m) is torch.nn.Linear and not m.weight.is_meta
                        for _, m in quantization_targets(model)))

    assign_weights(model, sources, torch.device("cpu"), torch.float32, after_tensor)
    assert len(seen) == len(files)
    assert max(seen) == 0  # no loaded target waits in full precision for the rest of its file
    assert "Linear" not in {type(m).__name__ for _, m in quantization_targets(model)}
    by_file = load(folder, "8bit").model  # the loader's weight-by-weight path
    whole = load(folder, "none").model
    quantize_model(whole, "8bit", "cpu")
    prompt = torch.arange(1, 9)[None]
    with torch.inference_mode():
        logits = [m.text_logits(m.llm_forward(m.embed_text(prompt), m.new_caches(8, 1).llm))
                  for m in (by_file, whole)]
    # Same weights and scales; LLM.int8's CPU kernel may order its sums differently per call.
    torch.testing.assert_close(logits[0], logits[1], atol=0.1, rtol=0.05)
    for (name, a), (_, b) in zip(by_file.named_parameters(), whole.named_parameters()):
        assert torch.equal(a, b), name
