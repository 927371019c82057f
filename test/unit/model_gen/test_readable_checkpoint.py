"""The demo's tiny random checkpoint: the real Llama-3 tokenizer, words instead of byte soup, a
realistic share of blank CTC labels, and text that leads speech as the policy prescribes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stream_omni_ros.model.checkpoint import LoadOptions, load_stream_omni
from stream_omni_ros.model.events import AsrTranscript, SpeechUnits, TextDelta
from stream_omni_ros.model.generation import TEXT_LEAD, StreamOmniGenerator
from stream_omni_ros.model.request import GenerationConfig, GenerationRequest
from stream_omni_ros.model.readable_checkpoint import WORDS, write_readable_checkpoint


@pytest.fixture(scope="module")
def readable(tmp_path_factory) -> StreamOmniGenerator:
    """The readable checkpoint written in its on-disk format and loaded by the real loader."""
    torch.set_num_threads(1)
    folder = write_readable_checkpoint(tmp_path_factory.mktemp("readable") / "stream_omni")
    return StreamOmniGenerator(load_stream_omni(str(folder), LoadOptions(
        device="cpu", dtype="fp32", local_files_only=True)))


@pytest.fixture(scope="module")
def answer(readable) -> list:
    """Events of one spoken question (seeded random units) answered in speech."""
    units = np.random.default_rng(0).integers(0, 32, 120).tolist()
    request = GenerationRequest("speech_to_speech", units=units, config=GenerationConfig(
        max_new_tokens=80, max_new_units=150))
    return list(readable.generate(request))


def test_it_uses_the_real_llama3_tokenizer(readable):
    tokenizer = readable.tokenizer
    assert len(tokenizer) == 128256 + 32
    assert readable.special.bos == 128000 and readable.special.blank == 128002
    assert tokenizer.encode(" the table", add_special_tokens=False) == [279, 2007]


def test_transcript_and_answer_are_varied_english_words(answer):
    transcript = next(e for e in answer if isinstance(e, AsrTranscript)).text
    response = [e for e in answer if isinstance(e, TextDelta)][-1].text
    for text in (transcript, response):
        words = text.split()
        assert len(words) >= 10 and set(words) <= set(WORDS), text
        assert len(set(words)) >= 8, text  # not one or two words over and over


def test_ctc_head_leaves_a_realistic_share_of_units_blank(readable, answer):
    blank = readable.special.blank
    heard = next(e for e in answer if isinstance(e, AsrTranscript)).label_ids
    assert 1 / 3 <= np.mean([label == blank for label in heard]) <= 4 / 5
    units = [e.units[0] for e in answer if isinstance(e, SpeechUnits)]
    spoken = blank_share_of_spoken_units(readable, units)
    assert 1 / 3 <= spoken <= 4 / 5


def blank_share_of_spoken_units(generator: StreamOmniGenerator, units: list[int]) -> float:
    """Share of blank CTC labels when the answer's units are read back as speech input."""
    request = GenerationRequest("speech_to_text", units=units,
                                config=GenerationConfig(max_new_tokens=1))
    heard = next(e for e in generator.generate(request) if isinstance(e, AsrTranscript))
    return float(np.mean([label == generator.special.blank for label in heard.label_ids]))


def test_the_answer_is_seconds_of_speech_with_the_text_ahead(answer):
    kinds = ["text" if isinstance(e, TextDelta) else "unit" for e in answer
             if isinstance(e, (TextDelta, SpeechUnits))]
    assert kinds[:TEXT_LEAD] == ["text"] * TEXT_LEAD  # wait-3 before the first unit
    assert kinds.count("unit") == 150  # 6 s of speech: every step yields a unit
    # text keeps arriving while it is spoken, not all at once at either end
    halves = kinds[:len(kinds) // 2], kinds[len(kinds) // 2:]
    assert all(half.count("text") >= 10 for half in halves)
