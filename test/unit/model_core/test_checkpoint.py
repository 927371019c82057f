"""Loading tiny checkpoints: round trip, strict keys, shapes, layer counts, options, hub ids."""
from __future__ import annotations

import json
import logging
import shutil
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stream_omni_ros.errors import CheckpointError, ConfigError
from stream_omni_ros.model.checkpoint import LoadOptions, load_stream_omni
from stream_omni_ros.model.config import StreamOmniConfig
from stream_omni_ros.model.stream_omni import StreamOmniForCausalLM
from stream_omni_ros.model.tiny_checkpoint import (random_state_dict, tiny_config_dict,
                                                   write_safetensors_shards,
                                                   write_tiny_checkpoint)

FP32 = LoadOptions(dtype="fp32")


def rewrite_weights(source: Path, target: Path, edit) -> Path:
    """Copy a checkpoint folder, passing its tensors through `edit` before re-sharding."""
    shutil.copytree(source, target)
    tensors = {}
    for shard in sorted(target.glob("*.safetensors")):
        tensors.update(load_file(str(shard)))
        shard.unlink()
    write_safetensors_shards(edit(tensors), target, max_shard_bytes=300_000)
    return target


def edit_config(folder: Path, edit) -> None:
    """Rewrite config.json through `edit`."""
    raw = json.loads((folder / "config.json").read_text())
    edit(raw)
    (folder / "config.json").write_text(json.dumps(raw))


def stage_outputs(model: StreamOmniForCausalLM) -> list[torch.Tensor]:
    """Text, CTC and unit logits of a fixed input through all three stacks."""
    caches = model.new_caches(16, 16)
    text = model.text_logits(model.llm_forward(model.embed_text(torch.tensor([[256, 72, 105]])),
                                               caches.llm))
    h_b = model.bottom_forward(torch.tensor([[256, 272, 290, 300]]), caches.bottom)
    top = model.top_forward(h_b, caches.top, torch.tensor([[72, 105]]), torch.tensor([0, 1]))
    return [text, model.ctc_logits(h_b), model.unit_logits(top)]


def test_sharded_round_trip_gives_identical_logits(tiny_folder, tiny_loaded):
    """Several shards + index load back to exactly the written weights."""
    assert len(list(tiny_folder.glob("model-*-of-*.safetensors"))) >= 3
    assert (tiny_folder / "model.safetensors.index.json").is_file()
    reference = StreamOmniForCausalLM(tiny_loaded.config)
    reference.load_state_dict(random_state_dict(tiny_loaded.config, seed=0), strict=True)
    for got, want in zip(stage_outputs(tiny_loaded.model), stage_outputs(reference)):
        torch.testing.assert_close(got, want, atol=0, rtol=0)
    report = tiny_loaded.report
    assert report["weights.shard_count"] >= 3
    assert report["config.eos_token_id"] == [257, 264, 265]
    assert report["resolved.num_bottom_audio_layers"] == "2 (from config.json)"
    assert report["tokenizer.units_contiguous"] is True
    assert report["generation_config"]["temperature"] == 0.6
    assert tiny_loaded.report["tokenizer.audio_0_id"] == 272
    assert tiny_loaded.tokenizer.convert_tokens_to_ids("<|eot_id|>") == 265


def test_missing_key_is_an_error_naming_it(tiny_folder, tmp_path):
    """A tensor absent from every shard stops loading and is listed."""
    key = "model.bottom_audio_layers.1.mlp.up_proj.weight"
    broken = rewrite_weights(tiny_folder, tmp_path / "missing",
                             lambda t: {k: v for k, v in t.items() if k != key})
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        load_stream_omni(str(broken), FP32)


def test_wrong_shape_is_an_error_naming_key_and_shapes(tiny_folder, tmp_path):
    """A tensor of another shape is not silently re-initialised (unlike the original)."""
    key = "model.layers.0.self_attn.k_proj.weight"
    broken = rewrite_weights(tiny_folder, tmp_path / "shape",
                             lambda t: {**t, key: torch.zeros(48, 64)})
    with pytest.raises(CheckpointError, match=r"k_proj\.weight: file \(48, 64\) != expected "
                                              r"\(32, 64\)"):
        load_stream_omni(str(broken), FP32)


def test_unexpected_key_is_ignored_and_reported(tiny_folder, tmp_path, caplog):
    """An extra head from training (top_audio_to_text_proj) loads with a warning."""
    extra = "top_audio_to_text_proj.weight"
    folder = rewrite_weights(tiny_folder, tmp_path / "extra",
                             lambda t: {**t, extra: torch.ones(272, 64)})
    with caplog.at_level(logging.WARNING):
        loaded = load_stream_omni(str(folder), FP32)
    assert loaded.report["weights.unexpected_keys"] == [extra]
    assert loaded.report["weights.top_audio_to_text_proj_present"] is True
    assert extra in caplog.text


def test_layer_counts_inferred_from_weight_map(tiny_folder, tmp_path):
    """Without num_*_audio_layers the weight map decides; a contradicting config is refused."""
    folder = shutil.copytree(tiny_folder, tmp_path / "nocounts")
    edit_config(folder, lambda raw: [raw.pop("num_bottom_audio_layers"),
                                     raw.pop("num_top_audio_layers")])
    loaded = load_stream_omni(str(folder), FP32)
    assert (loaded.config.num_bottom_audio_layers, loaded.config.num_top_audio_layers) == (2, 1)
    assert "weight map" in loaded.report["resolved.num_top_audio_layers"]
    edit_config(folder, lambda raw: raw.update(num_top_audio_layers=3))
    with pytest.raises(CheckpointError, match="num_top_audio_layers=3 but the weight map "
                                              "holds 1"):
        load_stream_omni(str(folder), FP32)
    defaults = StreamOmniConfig.from_dict(tiny_config_dict("defaults"))
    assert (defaults.num_bottom_audio_layers, defaults.num_top_audio_layers) == (3, 5)


def test_full_vocabulary_layout_loads(tmp_path):
    """doc/model.md §6.4: no text_vocab_size and six matrices of vocab_size rows."""
    folder = write_tiny_checkpoint(tmp_path / "full", "fullvocab")
    loaded = load_stream_omni(str(folder), FP32)
    assert loaded.config.text_vocab_size == loaded.config.vocab_size == 304
    model = loaded.model
    h_b = model.bottom_forward(torch.tensor([[256, 290]]), model.new_caches(4, 4).bottom)
    assert model.soft_text_embeddings(model.ctc_logits(h_b)).shape == (1, 2, 64)
    assert model.embed_text(torch.tensor([[300]])).shape == (1, 1, 64)  # a unit id


def test_config_and_file_errors_name_what_is_missing(tiny_folder, tmp_path):
    """Missing field, missing config.json / tokenizer.json, bad options: clear errors."""
    folder = shutil.copytree(tiny_folder, tmp_path / "errors")
    edit_config(folder, lambda raw: raw.pop("hidden_size"))
    with pytest.raises(CheckpointError, match="hidden_size"):
        load_stream_omni(str(folder), FP32)
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json is missing"):
        load_stream_omni(str(folder), FP32)
    other = shutil.copytree(tiny_folder, tmp_path / "notok")
    (other / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match=r"tokenizer\.json is missing"):
        load_stream_omni(str(other), FP32)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_stream_omni(str(tmp_path / "nowhere"), FP32)
    with pytest.raises(ConfigError, match="dtype='fp8'"):
        LoadOptions(dtype="fp8")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            load_stream_omni(str(tiny_folder), LoadOptions(device="cuda"))


def test_dtype_option_sets_weights_and_caches(tiny_folder, tiny_loaded):
    """bf16 loading gives bf16 weights/caches and logits close to fp32."""
    loaded = load_stream_omni(str(tiny_folder), LoadOptions(dtype="bf16"))
    assert loaded.model.lm_head.weight.dtype == torch.bfloat16
    assert loaded.model.new_caches(2, 2).llm.kv.dtype == torch.bfloat16
    for got, want in zip(stage_outputs(loaded.model), stage_outputs(tiny_loaded.model)):
        assert got.dtype == torch.bfloat16
        torch.testing.assert_close(got.float(), want, atol=0.15, rtol=0.05)


def test_hub_id_offline_names_id_without_network(monkeypatch):
    """HF_HUB_OFFLINE=1 and an uncached id: a CheckpointError, and no socket is opened."""
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    with pytest.raises(CheckpointError, match=r"'stream-omni-tests/not-cached'.*HF_HUB_OFFLINE"):
        load_stream_omni("stream-omni-tests/not-cached", FP32)
