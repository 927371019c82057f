"""Random full-shape models: layer cuts keep every width, buffers are real, HF cache keyword."""
import inspect

import pytest
import torch

from stream_omni_ros.errors import ConfigError
from stream_omni_ros.bench import model_bench as bench
from stream_omni_ros.model.config import StreamOmniConfig
from stream_omni_ros.model.quantization import quantize_model
from stream_omni_ros.model.random_weights import FULL_CONFIG, full_config, random_stream_omni
from stream_omni_ros.model.tiny_checkpoint import tiny_config_dict


def test_layer_cut_keeps_widths_and_vocabularies():
    cut = full_config(vision=True, layers=2)
    assert (cut["num_hidden_layers"], cut["num_bottom_audio_layers"],
            cut["num_top_audio_layers"], cut["vision_config"]["num_hidden_layers"]) == (2, 2, 2, 2)
    for key in ("hidden_size", "intermediate_size", "vocab_size", "text_vocab_size"):
        assert cut[key] == FULL_CONFIG[key]
    assert full_config()["num_hidden_layers"] == 32 and "vision_config" not in full_config()
    assert full_config(layers=4)["num_bottom_audio_layers"] == 3  # never more than the model


def test_negative_layer_count_is_refused():
    with pytest.raises(ConfigError, match="layers = -1"):
        full_config(layers=-1)


def test_random_model_has_bounded_weights_and_real_position_ids():
    config = StreamOmniConfig.from_dict(tiny_config_dict("anyres"))
    model = random_stream_omni(config, "cpu", torch.float32, seed=3)
    tensors = list(model.state_dict().values())
    assert all(torch.isfinite(t.float()).all() for t in tensors)
    position_ids = [b for n, b in model.named_buffers() if n.endswith("position_ids")]
    assert position_ids and all(torch.equal(b[0], torch.arange(b.shape[-1]))
                                for b in position_ids)
    again = random_stream_omni(config, "cpu", torch.float32, seed=3)
    assert torch.equal(model.lm_head.weight, again.lm_head.weight)  # seeded


class PastKeyValuesForward(torch.nn.Module):
    def forward(self, input_ids=None, past_key_values=None, use_cache=None, **kwargs):
        return input_ids


class NoCacheForward(torch.nn.Module):
    def forward(self, input_ids=None, **kwargs):
        return input_ids


def test_cache_keyword_follows_the_transformers_signature():
    from transformers import LlamaForCausalLM

    installed = inspect.signature(LlamaForCausalLM.forward).parameters
    expected = "cache" if "cache" in installed else "past_key_values"
    assert bench.hf_cache_argument(LlamaForCausalLM.__new__(LlamaForCausalLM)) == expected
    assert bench.hf_cache_argument(PastKeyValuesForward()) == "past_key_values"
    with pytest.raises(ConfigError, match="neither cache= nor past_key_values="):
        bench.hf_cache_argument(NoCacheForward())


@pytest.mark.parametrize("quantization", ["8bit", "4bit"])
def test_random_model_quantized_module_by_module_equals_the_model_quantized_after(quantization):
    config = StreamOmniConfig.from_dict(tiny_config_dict("novision"))
    built = random_stream_omni(config, "cpu", torch.bfloat16, seed=5, quantization=quantization)
    after = random_stream_omni(config, "cpu", torch.bfloat16, seed=5)
    quantize_model(after, quantization, "cpu")
    assert type(built.lm_head) is type(after.lm_head) is not torch.nn.Linear
    pairs = list(zip(built.named_parameters(), after.named_parameters()))
    assert len(pairs) == len(list(after.parameters()))
    for (name, a), (other, b) in pairs:
        assert name == other and torch.equal(a, b), name
    assert torch.equal(built.lm_head.weight.quant_state.absmax
                       if quantization == "4bit" else built.lm_head.weight.SCB,
                       after.lm_head.weight.quant_state.absmax
                       if quantization == "4bit" else after.lm_head.weight.SCB)
