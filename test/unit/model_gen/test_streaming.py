"""Cache bookkeeping, stop ids, cancellation, prepared turns and bad inputs of the generator."""
import contextlib

import pytest
import torch

from stream_omni_ros.errors import ConfigError, InputError
from stream_omni_ros.model.events import (END_TEXT_EOS, END_UNIT_EOS, GenerationEnd,
                                          SpeechUnits, TextDelta)
from stream_omni_ros.model.generation import text_window
from stream_omni_ros.model.request import GenerationConfig, GenerationRequest
from stream_omni_ros.model.tokens import PromptBuilder

UNITS = (3, 3, 7, 1, 0, 31, 12, 12, 5)


def test_text_window_positions():
    assert text_window([]) == ([], [])
    assert text_window([10, 11]) == ([10, 11], [0, 1])
    assert text_window(list(range(100, 108))) == ([103, 104, 105, 106, 107], [3, 4, 5, 6, 7])


def test_caches_grow_per_stream(generator, image):
    cfg = GenerationConfig(max_new_tokens=30, max_new_units=20, mask_units=True,
                           ignore_stop_ids=True)
    request = GenerationRequest("speech_to_speech", units=UNITS, images=(image,), config=cfg)
    prompt = PromptBuilder(generator.tokenizer, generator.special).build(units=UNITS, n_images=1)
    speech_prompt = len(prompt.speech_side().ids)
    llm_prompt = speech_prompt + generator.model.encode_image(image).shape[0]
    llm_lengths = []
    for event in generator.generate(request):
        caches = generator.active.caches
        if isinstance(event, SpeechUnits):
            # The bottom stack already read the unit just emitted; the top reads it next step.
            assert caches.bottom.length == caches.top.length + 1
            assert caches.top.length == speech_prompt + event.start_index
            llm_lengths.append(caches.llm.length)
        if isinstance(event, GenerationEnd):
            # Every generated text token but the last was fed back; image tokens only here.
            assert caches.llm.length == llm_prompt + event.n_text_tokens - 1
            assert event.n_units == 20
    assert llm_lengths == sorted(llm_lengths) and llm_lengths[0] > llm_prompt
    assert generator.active is None


@contextlib.contextmanager
def always_stop(weight, stop_ids):
    """Rows of two stop ids are +v and -v, every other row 0: one of them always wins."""
    saved = weight.clone()
    with torch.no_grad():
        weight.zero_()
        v = torch.randn(weight.shape[1], generator=torch.Generator().manual_seed(0))
        weight[stop_ids[0]], weight[stop_ids[1]] = v, -v
    try:
        yield
    finally:
        with torch.no_grad():
            weight.copy_(saved)


def test_text_stops_on_stop_ids(generator):
    stops = generator.special.stop_ids
    request = GenerationRequest("text_to_text", text="Hi")
    with always_stop(generator.model.lm_head.weight, stops):
        events = list(generator.generate(request))
    assert events == [GenerationEnd(END_TEXT_EOS, 0, 0)]


def test_units_stop_on_stop_ids(generator):
    stops = generator.special.stop_ids
    request = GenerationRequest("text_to_speech", text="Hi")
    with always_stop(generator.model.audio_lm_head.weight, stops):
        events = list(generator.generate(request))
    assert not any(isinstance(e, SpeechUnits) for e in events)
    assert events[-1].reason == END_UNIT_EOS and events[-1].n_units == 0


def test_close_mid_stream_frees_and_next_request_works(generator):
    request = GenerationRequest("speech_to_speech", units=UNITS,
                                config=GenerationConfig(max_new_units=40, mask_units=True))
    full = list(generator.generate(request))
    stream = generator.generate(request)
    first = [next(stream) for _ in range(3)]
    assert generator.active is not None and first == full[:3]
    stream.close()
    assert generator.active is None
    assert list(generator.generate(request)) == full


def test_prepared_turn_with_revised_units_matches_one_shot(generator, image):
    request = GenerationRequest("speech_to_speech", units=UNITS, images=(image,),
                                config=GenerationConfig(max_new_units=15, mask_units=True))
    one_shot = list(generator.generate(request))
    turn = generator.prepare(GenerationRequest("speech_to_speech", images=(image,),
                                               config=request.config))
    partial = turn.feed_units(UNITS[:4])
    short = GenerationRequest("speech_to_text", units=UNITS[:4], images=(image,))
    assert partial == next(iter(generator.generate(short))).text
    turn.feed_units([9, 9, 9, 9, 9, 9])
    assert turn.caches.bottom.length == turn.speech_prefix_len + 6
    turn.feed_units(UNITS[:6])  # revises indices 0..5: truncate and recompute
    final = turn.feed_units(UNITS)
    assert turn.feed_units(UNITS) == final  # nothing new: no cache change
    assert turn.caches.llm.length == turn.llm_prefix_len + len(UNITS)
    assert final == one_shot[0].text
    assert list(generator.generate(request, prepared=turn)) == one_shot
    with pytest.raises(InputError, match="prepared turn"):
        generator.generate(request, prepared=turn)


def test_sampling_is_seeded(generator):
    cfg = GenerationConfig(temperature=1.0, top_p=0.9, unit_temperature=1.0, seed=7,
                           max_new_units=10, max_new_tokens=10)
    request = GenerationRequest("speech_to_speech", units=UNITS, config=cfg)
    assert list(generator.generate(request)) == list(generator.generate(request))
    texts = {"".join(e.delta for e in generator.generate(GenerationRequest(
        "text_to_text", text="Hi", config=GenerationConfig(temperature=1.5, seed=seed,
                                                            max_new_tokens=8)))
        if isinstance(e, TextDelta)) for seed in range(4)}
    assert len(texts) > 1


@pytest.mark.parametrize("request_kwargs, message", [
    ({"inference_type": "speech_to_song", "text": "x"}, "unknown inference_type 'speech_to_song'"),
    ({"inference_type": "speech_to_text"}, "speech_to_text needs a non-empty units"),
    ({"inference_type": "speech_to_speech", "units": []}, "needs a non-empty units"),
    ({"inference_type": "speech_to_speech", "units": [1, 32]}, "unit 32 at index 1"),
    ({"inference_type": "text_to_text", "text": ""}, "text_to_text needs a non-empty text"),
    ({"inference_type": "text_to_text", "text": "x", "images": [torch.zeros(3)]}, "images\\[0\\]"),
])
def test_bad_inputs_raise_input_error(generator, request_kwargs, message):
    with pytest.raises(InputError, match=message):
        generator.generate(GenerationRequest(**request_kwargs))


def test_bad_config_raises_config_error():
    with pytest.raises(ConfigError, match="top_p=0"):
        GenerationConfig(top_p=0)
