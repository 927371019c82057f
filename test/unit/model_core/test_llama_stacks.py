"""KV-cached stacks == full recompute; LLM == transformers' Llama; RoPE and cross-attention."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from stream_omni_ros.errors import InputError
from stream_omni_ros.model.config import RopeScaling, StreamOmniConfig
from stream_omni_ros.model.llama import Rotary, grouped_attention, rope_inv_freq
from stream_omni_ros.model.tiny_checkpoint import tiny_config_dict

TOL = 1e-4


def test_llm_cache_incremental_chunked_and_refill_match_full_recompute(tiny_loaded):
    """Token-by-token, chunked and truncate-and-refill decoding give the full-pass logits."""
    model = tiny_loaded.model
    ids = torch.randint(0, 272, (1, 12), generator=torch.Generator().manual_seed(1))
    full = model.text_logits(model.llm_forward(model.embed_text(ids), model.new_caches(32, 8).llm))
    cache = model.new_caches(32, 8).llm
    parts = [model.llm_forward(model.embed_text(ids[:, :5]), cache)]
    parts.append(model.llm_forward(model.embed_text(ids[:, 5:8]), cache))  # chunk at offset 5
    parts += [model.llm_forward(model.embed_text(ids[:, i:i + 1]), cache) for i in range(8, 12)]
    stepwise = model.text_logits(torch.cat(parts, dim=1))
    torch.testing.assert_close(stepwise, full, atol=TOL, rtol=0)
    other = ids.clone()
    other[:, 6:] = (other[:, 6:] + 7) % 272
    cache.truncate(6)
    refill = model.text_logits(model.llm_forward(model.embed_text(other[:, 6:]), cache))
    expected = model.text_logits(
        model.llm_forward(model.embed_text(other), model.new_caches(32, 8).llm))
    torch.testing.assert_close(refill, expected[:, 6:], atol=TOL, rtol=0)
    assert cache.length == 12


def test_bottom_and_top_caches_match_full_recompute_with_refill(tiny_loaded):
    """Speech stacks: unit-by-unit == one pass, cross-attention on the last position only."""
    model = tiny_loaded.model
    ids = torch.randint(0, 304, (1, 9), generator=torch.Generator().manual_seed(2))
    window, positions = torch.tensor([[10, 40, 65]]), torch.tensor([4, 5, 6])
    caches = model.new_caches(8, 16)
    h_full = model.bottom_forward(ids, caches.bottom)
    top_full = model.unit_logits(model.top_forward(h_full, caches.top, window, positions))
    steps = model.new_caches(8, 16)
    h_steps = torch.cat([model.bottom_forward(ids[:, :4], steps.bottom)] + [
        model.bottom_forward(ids[:, i:i + 1], steps.bottom) for i in range(4, 9)], dim=1)
    torch.testing.assert_close(h_steps, h_full, atol=TOL, rtol=0)
    model.top_forward(h_steps[:, :4], steps.top)
    for i in range(4, 8):
        model.top_forward(h_steps[:, i:i + 1], steps.top)
    last = model.unit_logits(model.top_forward(h_steps[:, 8:], steps.top, window, positions))
    torch.testing.assert_close(last[:, -1], top_full[:, -1], atol=TOL, rtol=0)
    steps.top.truncate(8)
    steps.bottom.truncate(8)
    again = model.top_forward(model.bottom_forward(ids[:, 8:], steps.bottom), steps.top,
                              window, positions)
    torch.testing.assert_close(model.unit_logits(again)[:, -1], top_full[:, -1], atol=TOL,
                               rtol=0)
    assert steps.bottom.length == steps.top.length == 9


def test_llm_matches_transformers_llama(tiny_loaded):
    """The LLM path equals transformers' LlamaForCausalLM with the same weights (fp32)."""
    transformers = pytest.importorskip("transformers")
    raw = dict(tiny_loaded.config.raw)
    rope = {"rope_type": "llama3", "rope_theta": raw["rope_theta"], **{
        k: v for k, v in raw["rope_scaling"].items() if k != "rope_type"}}
    reference_config = transformers.LlamaConfig(
        vocab_size=raw["text_vocab_size"], hidden_size=raw["hidden_size"],
        intermediate_size=raw["intermediate_size"], num_hidden_layers=raw["num_hidden_layers"],
        num_attention_heads=raw["num_attention_heads"],
        num_key_value_heads=raw["num_key_value_heads"], rms_norm_eps=raw["rms_norm_eps"],
        max_position_embeddings=raw["max_position_embeddings"], rope_parameters=rope,
        attn_implementation="eager")
    reference = transformers.LlamaForCausalLM(reference_config).eval()
    ours = tiny_loaded.model.state_dict()
    reference.load_state_dict({k: ours[k] for k in reference.state_dict()}, strict=True)
    ids = torch.randint(0, 272, (1, 80), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = reference(input_ids=ids).logits
    model = tiny_loaded.model
    got = model.text_logits(model.llm_forward(model.embed_text(ids), model.new_caches(80, 1).llm))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_llama3_rope_scaling_follows_spec_formula():
    """High frequencies kept, low divided by the factor, the band in between interpolated."""
    scaling = RopeScaling(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=8192)
    got = rope_inv_freq(128, 500000.0, scaling)
    for k, value in enumerate(got.tolist()):
        f = 500000.0 ** (-2 * k / 128)
        wavelength = 2 * math.pi / f
        if wavelength < 2048:
            want = f
        elif wavelength > 8192:
            want = f / 8
        else:
            s = (8192 / wavelength - 1) / 3
            want = (1 - s) * f / 8 + s * f
        assert value == pytest.approx(want, rel=1e-5), k
    plain = rope_inv_freq(128, 500000.0, None)
    norope = StreamOmniConfig.from_dict(tiny_config_dict("norope"))
    assert norope.rope_scaling is None
    torch.testing.assert_close(Rotary(norope).inv_freq_cpu, rope_inv_freq(16, 500000.0, None))
    assert float(plain[0]) == float(got[0])
    assert float(got[-1]) == pytest.approx(float(plain[-1]) / 8, rel=1e-6)


def naive_cross_attention(layer, x_last, speech_pos, text, text_pos, rotary):
    """Spec 7.2 written out: RoPE on q at the speech position and on k at the text positions."""
    attn = layer.audio_text_attn
    heads, hd = attn.heads, attn.head_dim

    def rotate(t, pos):
        cos, sin = rotary.cos_sin(pos, t.dtype)
        half = hd // 2
        return t * cos + torch.cat((-t[..., half:], t[..., :half]), -1) * sin

    q = rotate(attn.q_proj(x_last).view(1, heads, hd).transpose(0, 1), speech_pos)  # [h,1,hd]
    k = rotate(attn.k_proj(text[0]).view(-1, heads, hd).transpose(0, 1), text_pos)  # [h,W,hd]
    v = attn.v_proj(text[0]).view(-1, heads, hd).transpose(0, 1)
    weights = torch.softmax((q @ k.transpose(1, 2)) / math.sqrt(hd), dim=-1)
    return attn.o_proj((weights @ v).transpose(0, 1).reshape(1, heads * hd))


def test_cross_attention_uses_window_text_positions(tiny_loaded):
    """The newest speech position attends to the window with keys rotated at n-|W|..n-1."""
    model = tiny_loaded.model
    layer = model.model.top_audio_layers[0]
    h_b = torch.randn(1, 6, 64, generator=torch.Generator().manual_seed(4))
    window, positions = torch.tensor([[11, 12, 13, 14, 15]]), torch.tensor([3, 4, 5, 6, 7])
    with torch.inference_mode():
        cache = model.new_caches(1, 8).top
        x = h_b + layer.self_attn(layer.input_layernorm(h_b), model.rotary.cos_sin(
            torch.arange(6), h_b.dtype), cache, 0, 0)
        text = model.text_to_audio_proj(window)
        cross = naive_cross_attention(layer, x[0, -1:], torch.tensor([5]), text, positions,
                                      model.rotary)
        x_last = x[:, -1] + cross
        expected = model.model.top_audio_norm(
            x_last + layer.mlp(layer.post_attention_layernorm(x_last)))
    got = model.top_forward(h_b, model.new_caches(1, 8).top, window, positions)[:, -1]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    shifted = model.top_forward(h_b, model.new_caches(1, 8).top, window, positions - 3)[:, -1]
    assert not torch.allclose(shifted, got, atol=1e-4)
    with pytest.raises(InputError, match="window_positions"):
        model.top_forward(h_b, model.new_caches(1, 8).top, window, positions[:2])


def test_cache_overflow_names_the_stack(tiny_loaded):
    """Running past a cache's capacity raises an InputError naming that stack."""
    model = tiny_loaded.model
    caches = model.new_caches(4, 4)
    with pytest.raises(InputError, match="bottom speech KV cache is full"):
        model.bottom_forward(torch.zeros(1, 5, dtype=torch.long), caches.bottom)
    assert caches.bottom.length == 0
    with pytest.raises(InputError, match="LLM KV cache"):
        caches.llm.truncate(3)


def test_soft_text_embeddings_are_probability_weighted_text_embeddings(tiny_loaded):
    """A confident CTC distribution maps to that token's text embedding."""
    model = tiny_loaded.model
    logits = torch.full((1, 2, 272), -1e4)
    logits[0, 0, 65], logits[0, 1, 258] = 0.0, 0.0
    soft = model.soft_text_embeddings(logits)
    torch.testing.assert_close(soft[0], model.model.embed_tokens.weight[[65, 258]])
    assert F.cosine_similarity(soft[0, 0], soft[0, 1], dim=0) < 0.99


@pytest.mark.parametrize("queries, masked", [(1, False), (1, True), (4, False), (4, True)])
def test_grouped_attention_equals_attention_over_repeated_heads(queries, masked):
    generator = torch.Generator().manual_seed(queries)
    q = torch.randn(1, 8, queries, 16, generator=generator)
    keys, values = (torch.randn(1, 2, 33, 16, generator=generator) for _ in range(2))
    mask = (torch.arange(33) <= 20)[None].expand(queries, 33) if masked else None
    expected = F.scaled_dot_product_attention(q, keys.repeat_interleave(4, 1),
                                              values.repeat_interleave(4, 1), attn_mask=mask)
    torch.testing.assert_close(grouped_attention(q, keys, values, mask, False), expected)
