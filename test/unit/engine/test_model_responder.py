"""The engine over the real model code: tiny random Stream-Omni, speech tokenizer and CosyVoice,
written in their on-disk formats and loaded by the real loaders."""
from __future__ import annotations

import time
import weakref

import numpy as np
import pytest
import torch

from stream_omni_ros.engine.audio_input import PcmChunk
from stream_omni_ros.engine.config import EngineConfig
from stream_omni_ros.engine.engine import ConversationEngine
from stream_omni_ros.engine.events import (ResponseDelta, SpeechChunk, TranscriptFinal,
                                           TranscriptPartial, TurnCancelled, TurnFinished)
from stream_omni_ros.engine.model_responder import StreamOmniResponder
from stream_omni_ros.engine.responder import (AudioPiece, Done, TextPiece, Transcript,
                                              TurnOptions, TurnRequest)
from stream_omni_ros.model.checkpoint import LoadOptions, load_stream_omni
from stream_omni_ros.model.generation import StreamOmniGenerator
from stream_omni_ros.model.request import GenerationConfig
from stream_omni_ros.model.speech_tokenizer import SpeechTokenizer
from stream_omni_ros.model.tiny_checkpoint import write_tiny_checkpoint
from stream_omni_ros.model.tiny_speech_tokenizer import write_tiny_speech_tokenizer
from stream_omni_ros.model.unit_stream import UnitWindowConfig
from stream_omni_ros.vocoder.cosyvoice import CosyVoiceVocoder, VocoderOptions
from stream_omni_ros.vocoder.tiny_cosyvoice import write_tiny_cosyvoice


@pytest.fixture(scope="module")
def tiny_parts(tmp_path_factory):
    torch.set_num_threads(1)  # tiny matmuls: threads only add overhead on 2 cores
    root = tmp_path_factory.mktemp("tiny_engine")
    folder = write_tiny_checkpoint(root / "stream_omni", variant="anyres")
    loaded = load_stream_omni(str(folder), LoadOptions(device="cpu", dtype="fp32",
                                                       local_files_only=True))
    tokenizer = SpeechTokenizer(write_tiny_speech_tokenizer(root / "cosyvoice"))
    vocoder = CosyVoiceVocoder.load(write_tiny_cosyvoice(root / "cosyvoice"),
                                    VocoderOptions(n_timesteps=2))
    return StreamOmniGenerator(loaded), tokenizer, vocoder


@pytest.fixture
def model_engine(tiny_parts, silero):
    generator, tokenizer, vocoder = tiny_parts
    generation = GenerationConfig(max_new_tokens=12, max_new_units=40, mask_units=True)
    responder = StreamOmniResponder(generator, tokenizer, vocoder, generation)
    engine = ConversationEngine(responder, EngineConfig(), speech_probability=silero)
    yield engine, responder
    engine.stop()


def collect_turn(engine: ConversationEngine, timeout: float = 30.0) -> list:
    """Events up to the end of the next turn."""
    events, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = engine.get_event(timeout=0.1)
        if event is not None:
            events.append(event)
            if isinstance(event, (TurnFinished, TurnCancelled)):
                return events
    raise AssertionError(f"timed out; got {[type(e).__name__ for e in events]}")


def play(engine: ConversationEngine, samples: np.ndarray, stamp: float = 50.0) -> None:
    """Feed 16 kHz audio as stamped 40 ms S16LE chunks."""
    pcm = (np.clip(samples, -1, 32767 / 32768) * 32768).astype("<i2")
    for i in range(0, len(pcm), 640):
        engine.feed_audio(PcmChunk(pcm[i:i + 640].tobytes(), 16000, stamp=stamp + i / 16000))


def test_spoken_turn_through_the_tiny_model(model_engine, speak):
    engine, responder = model_engine
    speech = speak("Hello robot, what is on the table in front of you?", 0.4, 1.0)
    play(engine, speech[:32000])  # the user is still talking
    early = []
    while not early or not isinstance(early[-1], TranscriptPartial):
        early.append(engine.get_event(timeout=10))
    play(engine, speech[32000:], stamp=52.0)
    events = early + collect_turn(engine)
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "TurnStarted" and kinds[-1] == "TurnFinished", kinds
    assert len({e.turn_id for e in events}) == 1
    final = kinds.index("TranscriptFinal")
    assert set(kinds[1:final]) == {"TranscriptPartial"}
    deltas = [e for e in events if isinstance(e, ResponseDelta)]
    chunks = [e for e in events if isinstance(e, SpeechChunk)]
    done = events[-1]
    assert done.response == "".join(d.delta for d in deltas)
    assert done.transcript == events[final].text
    assert chunks and {c.sample_rate for c in chunks} == {22050} and chunks[-1].is_final
    # the streamed audio has the offline length for the units generated (256 samples a frame)
    assert sum(len(c.pcm) for c in chunks) % 256 == 0
    assert done.metrics.endpoint_to_first_text_s is not None
    assert done.metrics.endpoint_to_first_audio_s is not None


def test_text_turn_with_camera_frame_and_history(model_engine):
    engine, responder = model_engine
    engine.feed_image(np.random.default_rng(0).integers(0, 256, (60, 80, 3), np.uint8),
                      stamp=time.time())
    first = engine.request_turn("What do you see?")
    events = collect_turn(engine)
    assert isinstance(events[-1], TurnFinished) and events[-1].turn_id == first
    assert events[-1].image_stamp is not None
    assert isinstance(events[1], TranscriptFinal) and events[1].text == "What do you see?"
    engine.request_turn("And now?")
    assert isinstance(collect_turn(engine)[-1], TurnFinished)


def test_partial_transcript_matches_the_final_one_for_the_same_audio(tiny_parts, speak):
    generator, tokenizer, vocoder = tiny_parts
    responder = StreamOmniResponder(generator, tokenizer, None, GenerationConfig(
        max_new_tokens=4))
    speech = speak("Please bring me the blue box.")
    responder.prepare((), "")
    partial = responder.transcribe_partial(speech)
    outputs = list(responder.begin_turn(_speech_request(speech)))
    assert outputs[0].text == partial
    assert outputs[-1].text_tokens <= 4


def test_the_final_transcript_tokenizes_only_the_tail_after_partials(tiny_parts, speak,
                                                                      tmp_path):
    generator, _, _ = tiny_parts
    calls: list[int] = []

    class Recording(SpeechTokenizer):
        def waveform_to_units(self, wave_16k):
            calls.append(len(wave_16k))
            return super().waveform_to_units(wave_16k)

    tokenizer = Recording(write_tiny_speech_tokenizer(tmp_path / "cosyvoice"))
    windows = UnitWindowConfig()
    responder = StreamOmniResponder(generator, tokenizer, None,
                                    GenerationConfig(max_new_tokens=2), unit_windows=windows)
    speech = np.tile(speak("Please bring me the blue box from the kitchen table."), 4)
    responder.prepare((), "")
    for end in range(8000, speech.size, 8000):  # a partial transcript every 0.5 s
        responder.transcribe_partial(speech[:end])
    calls.clear()
    outputs = list(responder.begin_turn(_speech_request(speech)))
    assert speech.size > 2 * windows.window_samples
    assert 0 < sum(calls) <= 2 * windows.window_samples  # not the whole utterance again
    whole = list(StreamOmniResponder(generator, tokenizer, None, GenerationConfig(
        max_new_tokens=2), unit_windows=UnitWindowConfig(hop_s=0)).begin_turn(
            _speech_request(speech)))
    assert isinstance(outputs[0], Transcript) and isinstance(whole[0], Transcript)
    assert calls[-1] == speech.size  # hop_s = 0: the whole utterance in one call


def _speech_request(audio: np.ndarray):
    return TurnRequest(audio, None, None, (), "", speak=False)


def _text_reply(responder: StreamOmniResponder, options: TurnOptions) -> tuple[str, int, bool]:
    """(response, text tokens, any audio) of one text turn answered directly."""
    outputs = list(responder.begin_turn(TurnRequest(None, "Describe the room.", None, (), "",
                                                    speak=options.speak is not False,
                                                    options=options)))
    done = outputs[-1]
    assert isinstance(done, Done)
    text = "".join(o.delta for o in outputs if isinstance(o, TextPiece))
    return text, done.text_tokens, any(isinstance(o, AudioPiece) for o in outputs)


def test_turn_options_reach_the_generator(tiny_parts):
    generator, tokenizer, vocoder = tiny_parts
    responder = StreamOmniResponder(generator, tokenizer, vocoder, GenerationConfig(
        max_new_tokens=12, max_new_units=40, mask_units=True, ignore_stop_ids=True))
    greedy, tokens, spoke = _text_reply(responder, TurnOptions(speak=False))
    assert tokens == 12 and not spoke  # text_to_text: the vocoder is not run
    _, short, _ = _text_reply(responder, TurnOptions(speak=False, max_new_tokens=3))
    assert short == 3
    sampled, _, _ = _text_reply(responder, TurnOptions(speak=False, temperature=1.0))
    assert sampled != greedy  # random weights: sampling the whole vocabulary differs
    # a nucleus this small keeps only the most likely token: greedy again
    nucleus, _, _ = _text_reply(responder, TurnOptions(speak=False, temperature=1.0,
                                                       top_p=1e-6))
    assert nucleus == greedy
    _, _, spoke = _text_reply(responder, TurnOptions(max_new_tokens=4))
    assert spoke


def test_max_new_units_limits_the_spoken_answer_not_its_text(tiny_parts):
    generator, tokenizer, vocoder = tiny_parts
    responder = StreamOmniResponder(generator, tokenizer, vocoder, GenerationConfig(
        max_new_tokens=40, max_new_units=40, mask_units=True, ignore_stop_ids=True))
    request = TurnRequest(None, "Describe the room.", None, (), "", speak=True,
                          options=TurnOptions(max_new_units=10))
    outputs = list(responder.begin_turn(request))
    samples = sum(len(o.pcm) for o in outputs if isinstance(o, AudioPiece))
    assert outputs[-1] == Done("max_new_units", outputs[-1].text_tokens)
    assert samples == 256 * int(10 / 25 * 22050 / 256)  # 10 units of speech
    assert outputs[-1].text_tokens < 40  # the text limit did not bind


def test_audio_turn_with_speak_false_through_the_tiny_model(model_engine, speak):
    engine, responder = model_engine
    speech = speak("Where is the blue box?")
    turn = engine.submit_audio_turn(speech, TurnOptions(speak=False, max_new_tokens=5))
    events = collect_turn(engine)
    assert isinstance(events[-1], TurnFinished) and events[-1].turn_id == turn
    assert any(isinstance(e, TranscriptFinal) for e in events)
    assert not [e for e in events if isinstance(e, SpeechChunk)]
    assert events[-1].metrics.text_tokens <= 5


def test_turn_prepared_with_its_image_is_reused_and_answers_the_same(tiny_parts, speak):
    generator, tokenizer, _ = tiny_parts
    responder = StreamOmniResponder(generator, tokenizer, None, GenerationConfig(
        max_new_tokens=6, ignore_stop_ids=True))
    speech = speak("What is on the table?")
    frame = np.random.default_rng(1).integers(0, 256, (48, 64, 3), np.uint8)
    request = TurnRequest(speech, None, frame, (), "", speak=False)
    unprepared = list(responder.begin_turn(request))
    responder.prepare((), "", frame)  # at speech start: system prompt, header and image tokens
    responder.transcribe_partial(speech[:16000])
    held = responder._prepared
    assert list(responder.begin_turn(request)) == unprepared
    assert held.used  # the answer ran on the turn prefilled before the endpoint
    responder.prepare((), "", frame)
    held = responder._prepared
    other_frame = TurnRequest(speech, None, frame.copy(), (), "", speak=False)
    assert list(responder.begin_turn(other_frame)) == unprepared  # same pixels, fresh prefill
    assert not held.used and held.caches is None  # released, never answered from


def test_closing_the_engine_lets_the_responder_free_its_model(tmp_path, silero):
    folder = write_tiny_checkpoint(tmp_path / "stream_omni")
    generator = StreamOmniGenerator(load_stream_omni(
        str(folder), LoadOptions(device="cpu", dtype="fp32", local_files_only=True)))
    tokenizer = SpeechTokenizer(write_tiny_speech_tokenizer(tmp_path / "cosyvoice"))
    model = weakref.ref(generator.model)
    responder = StreamOmniResponder(generator, tokenizer,
                                    generation=GenerationConfig(max_new_tokens=4))
    del generator, tokenizer
    engine = ConversationEngine(responder, EngineConfig(), speech_probability=silero)
    engine.request_turn("hello")
    assert isinstance(collect_turn(engine)[-1], TurnFinished)
    engine.close()
    # the responder is still referenced here, yet the weights are gone: it freed them itself
    assert model() is None and responder.generator is None
