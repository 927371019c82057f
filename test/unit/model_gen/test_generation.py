"""The four inference types on a tiny checkpoint: event order, text == full-recompute reference."""
import pytest
import torch

from stream_omni_ros.model.events import (END_MAX_TOKENS, END_MAX_UNITS, END_TEXT_EOS,
                                          AsrTranscript, GenerationEnd, SpeechUnits, TextDelta)
from stream_omni_ros.model.prepared import splice_images
from stream_omni_ros.model.request import (INFERENCE_TYPES, SPEECH_IN, SPEECH_OUT,
                                           GenerationConfig, GenerationRequest)
from stream_omni_ros.model.tokens import ChatMessage, PromptBuilder, ctc_collapse

UNITS = (3, 3, 7, 1, 0, 31, 12, 12, 5)
CONFIG = GenerationConfig(max_new_tokens=12, max_new_units=24, mask_units=True)


def make_request(kind, images=(), config=CONFIG, **kw):
    content = {"units": UNITS} if kind in SPEECH_IN else {"text": "What is this?"}
    return GenerationRequest(kind, images=images, config=config, **{**content, **kw})


@torch.inference_mode()
def reference_text_ids(gen, request, n_max):
    """Greedy text by recomputing the whole LLM input from scratch at every step."""
    model, builder = gen.model, PromptBuilder(gen.tokenizer, gen.special)
    content = {"units": request.units} if request.units else {"text": request.text}
    prompt = builder.build(**content, n_images=len(request.images), history=request.history)
    side = prompt.speech_side()
    ids = torch.tensor([side.ids])
    if request.inference_type in SPEECH_IN:
        h_b = model.bottom_forward(ids, model.new_caches(1, len(side.ids)).bottom)
        x = model.soft_text_embeddings(model.ctc_logits(h_b))
    else:
        x = model.embed_text(ids)
    x = splice_images(x, prompt.marker_positions, [model.encode_image(i) for i in request.images])
    out = []
    while len(out) < n_max:
        full = torch.cat([x, model.embed_text(torch.tensor([out], dtype=torch.long))], dim=1)
        cache = model.new_caches(full.shape[1], 1).llm
        token = int(model.text_logits(model.llm_forward(full, cache))[0, -1].argmax())
        if token in gen.special.stop_ids:
            break
        out.append(token)
    return out


@pytest.mark.parametrize("with_image", [False, True])
@pytest.mark.parametrize("kind", INFERENCE_TYPES)
def test_event_order_and_text_match_reference(generator, image, kind, with_image):
    request = make_request(kind, images=(image,) if with_image else ())
    events = list(generator.generate(request))
    kinds = [type(e) for e in events]
    assert kinds[-1] is GenerationEnd and kinds.count(GenerationEnd) == 1
    assert (kinds[0] is AsrTranscript) == (kind in SPEECH_IN)
    assert kinds.count(AsrTranscript) == (kind in SPEECH_IN)
    units = [e for e in events if isinstance(e, SpeechUnits)]
    end = events[-1]
    if kind in SPEECH_OUT:
        assert units and kinds.index(TextDelta) < kinds.index(SpeechUnits)
        assert [u.start_index for u in units] == list(range(len(units))) == list(
            range(end.n_units))
        assert all(0 <= u < 32 for e in units for u in e.units)
    else:
        assert not units and end.reason in (END_TEXT_EOS, END_MAX_TOKENS)
    deltas = [e for e in events if isinstance(e, TextDelta)]
    streamed = "".join(d.delta for d in deltas)
    assert deltas and deltas[-1].text == streamed
    reference = reference_text_ids(generator, request, CONFIG.max_new_tokens)
    if kind not in SPEECH_OUT:
        assert end.n_text_tokens == len(reference)
    assert end.n_text_tokens <= len(reference)
    assert streamed == generator.tokenizer.decode(reference[:end.n_text_tokens],
                                                  skip_special_tokens=True)


@torch.inference_mode()
def test_transcript_is_ctc_collapse_over_unit_span_only(generator):
    prompt = PromptBuilder(generator.tokenizer, generator.special).build(units=UNITS)
    model = generator.model
    cache = model.new_caches(1, len(prompt.ids)).bottom
    h_b = model.bottom_forward(torch.tensor([prompt.ids]), cache)
    labels = model.ctc_logits(h_b)[0].argmax(-1).tolist()
    start, end = prompt.content_span
    kept = ctc_collapse(labels[start:end], generator.special.blank)
    expected = generator.tokenizer.decode(kept, skip_special_tokens=True).strip()
    event = next(iter(generator.generate(make_request("speech_to_text"))))
    assert event == AsrTranscript(expected, tuple(labels[start:end]))


def test_budgets_end_the_streams(generator):
    cfg = GenerationConfig(max_new_tokens=2, max_new_units=5, ignore_stop_ids=True)
    end = list(generator.generate(make_request("text_to_text", config=cfg)))[-1]
    assert (end.reason, end.n_text_tokens) == (END_MAX_TOKENS, 2)
    end = list(generator.generate(make_request("speech_to_speech", config=cfg)))[-1]
    assert end.reason == END_MAX_UNITS and end.n_units <= 5 and end.n_text_tokens == 2


@pytest.mark.parametrize("kind", ["text_to_text", "speech_to_speech"])
def test_history_turns_are_in_the_prompt(generator, kind):
    history = (ChatMessage("user", "Where am I?"), ChatMessage("assistant", "In the lab."))
    request = make_request(kind, history=history)
    events = list(generator.generate(request))
    streamed = "".join(e.delta for e in events if isinstance(e, TextDelta))
    reference = reference_text_ids(generator, request, CONFIG.max_new_tokens)
    history_ids = PromptBuilder(generator.tokenizer, generator.special).prefix(history)
    plain_ids = PromptBuilder(generator.tokenizer, generator.special).prefix()
    turn = generator.prepare(request)
    plain_turn = generator.prepare(make_request(kind))
    assert turn.llm_prefix_len - plain_turn.llm_prefix_len == len(history_ids) - len(plain_ids)
    assert streamed == generator.tokenizer.decode(reference[:events[-1].n_text_tokens],
                                                  skip_special_tokens=True)
