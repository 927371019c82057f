"""Static-shape (optionally compiled) decode steps give the eager path's ids and states."""
import dataclasses

import pytest
import torch

from stream_omni_ros.errors import ConfigError
from stream_omni_ros.model.checkpoint import LoadOptions, load_stream_omni
from stream_omni_ros.model.events import SpeechUnits, TextDelta
from stream_omni_ros.model.compiled import CompiledDecodeConfig
from stream_omni_ros.model.generation import StreamOmniGenerator
from stream_omni_ros.model.request import SPEECH_IN, GenerationConfig, GenerationRequest
from stream_omni_ros.model.tiny_checkpoint import write_tiny_checkpoint

UNITS = (3, 3, 7, 1, 0, 31, 12, 12, 5)
CONFIG = GenerationConfig(max_new_tokens=12, max_new_units=24, mask_units=True,
                          ignore_stop_ids=True)


def outputs(gen, kind, text="What is this?"):
    """Text ids and units of one request, in order."""
    content = {"units": UNITS} if kind in SPEECH_IN else {"text": text}
    events = list(gen.generate(GenerationRequest(kind, config=CONFIG, **content)))
    return ([e.token_id for e in events if isinstance(e, TextDelta)],
            [u for e in events if isinstance(e, SpeechUnits) for u in e.units])


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Compiled graphs and their guards must not leak between tests."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("kind", ["text_to_text", "text_to_speech", "speech_to_speech"])
def test_static_steps_give_eager_ids(tiny_loaded, generator, kind):
    static = StreamOmniGenerator(tiny_loaded, compiled=CompiledDecodeConfig(
        compile=False, capacity_multiple=64))
    text_ids, units = outputs(static, kind)
    assert len(text_ids) > 1 and (len(units) == 24) == (kind != "text_to_text")
    assert (text_ids, units) == outputs(generator, kind)


@torch.inference_mode()
def test_static_llm_step_ignores_stale_and_unwritten_positions(tiny_loaded):
    model = tiny_loaded.model
    static = StreamOmniGenerator(tiny_loaded, compiled=CompiledDecodeConfig(
        compile=False, capacity_multiple=32)).stages
    prompt = torch.randn(1, 10, model.config.hidden_size, generator=torch.Generator()
                         .manual_seed(0))
    eager_cache, static_cache = model.new_caches(32, 1).llm, static.new_caches(20, 1).llm
    assert static_cache.capacity == 32
    for cache in (eager_cache, static_cache):
        model.llm_forward(prompt, cache)
        cache.truncate(7)  # revised speech input leaves stale keys at 7..9
        cache.kv[:, :, :, :, 10:] = 1e4  # never written; must not leak into attention
    for x in prompt.unbind(1)[7:]:
        expected = model.llm_forward(x[:, None], eager_cache)
        assert torch.allclose(static.llm_forward(x[:, None], static_cache), expected, atol=1e-5)
    assert static_cache.length == eager_cache.length == 10
    assert torch.allclose(static_cache.kv[:, :, :, :, :10], eager_cache.kv[:, :, :, :, :10],
                          atol=1e-5)


def test_compiled_steps_replay_without_recompiling(tiny_loaded, generator):
    # aot_eager captures the same full graph as inductor without minutes of C++ compilation.
    compiled = StreamOmniGenerator(tiny_loaded, compiled=CompiledDecodeConfig(
        backend="aot_eager"))
    assert outputs(compiled, "speech_to_speech") == outputs(generator, "speech_to_speech")
    assert outputs(compiled, "text_to_text") == outputs(generator, "text_to_text")
    longer = "Describe the picture in a few more words, please."
    # New positions and new cache tensors must replay the graphs captured above.
    with torch._dynamo.config.patch(error_on_recompile=True):
        assert outputs(compiled, "text_to_text", longer) == outputs(
            generator, "text_to_text", longer)
        assert outputs(compiled, "speech_to_speech") == outputs(generator, "speech_to_speech")


def test_speech_turns_of_any_length_replay_the_same_graphs(tiny_loaded):
    # Every token speakable, so that the top step runs compiled with text windows of each
    # width; its input is a view whose strides follow the utterance length.
    compiled = StreamOmniGenerator(tiny_loaded, compiled=CompiledDecodeConfig(
        backend="aot_eager"))
    eager = StreamOmniGenerator(tiny_loaded)
    compiled.speakable = eager.speakable = [True] * len(eager.speakable)

    def units_of(gen, n_units):
        request = GenerationRequest("speech_to_speech", config=CONFIG,
                                    units=[(3 * i + 1) % 32 for i in range(n_units)])
        return [u for e in gen.generate(request) if isinstance(e, SpeechUnits) for u in e.units]

    assert units_of(compiled, 5) == units_of(eager, 5)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for n_units in (6, 9, 14):
            assert units_of(compiled, n_units) == units_of(eager, n_units)


@pytest.mark.parametrize("field, value", [("mode", "fastest"), ("capacity_multiple", 0)])
def test_bad_compile_settings_are_rejected(field, value):
    with pytest.raises(ConfigError, match=field):
        dataclasses.replace(CompiledDecodeConfig(), **{field: value})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_steps_give_eager_ids(tmp_path):
    folder = write_tiny_checkpoint(tmp_path, variant="anyres")
    loaded = load_stream_omni(str(folder), LoadOptions(device="cuda", dtype="fp32",
                                                       local_files_only=True))
    eager = StreamOmniGenerator(loaded)
    compiled = StreamOmniGenerator(loaded, compiled=CompiledDecodeConfig())
    for kind in ("text_to_text", "speech_to_speech", "text_to_text"):
        assert outputs(compiled, kind) == outputs(eager, kind)


def test_cache_storage_is_reused_only_after_its_turn_dropped_it(tiny_loaded, generator):
    # One capacity for every turn here, so all of them compete for the same storages.
    static = StreamOmniGenerator(tiny_loaded, compiled=CompiledDecodeConfig(
        compile=False, capacity_multiple=4096))
    request = GenerationRequest("speech_to_speech", config=CONFIG)
    held = static.prepare(request)  # still alive while other turns run
    first = static.stages.new_caches(10, 10).llm.kv.data_ptr()
    assert static.stages.new_caches(10, 10).llm.kv.data_ptr() == first  # the first was dropped
    assert held.caches.llm.kv.data_ptr() != first
    assert outputs(static, "text_to_speech") == outputs(generator, "text_to_speech")
    events = list(static.generate(dataclasses.replace(request, units=UNITS), held))
    expected = outputs(generator, "speech_to_speech")
    assert [e.token_id for e in events if isinstance(e, TextDelta)] == expected[0]
    assert [u for e in events if isinstance(e, SpeechUnits) for u in e.units] == expected[1]
