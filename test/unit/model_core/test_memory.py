"""Memory per part and setting from the real shapes (meta device), and the refusal to load."""
import pytest

from stream_omni_ros.bench import memory_table
from stream_omni_ros.engine.runtime_config import (CosyVoiceConfig, ModelConfig, RuntimeConfig,
                                                   check_memory, required_memory)
from stream_omni_ros.errors import ConfigError
from stream_omni_ros.model import memory
from stream_omni_ros.model.checkpoint import LoadOptions
from stream_omni_ros.model.config import StreamOmniConfig
from stream_omni_ros.model.random_weights import full_config

H, VT, V = 4096, 128256, 132352
LAYER = 2 * H * H + 2 * H * 1024 + 3 * H * 14336 + 2 * H  # GQA attention, MLP, norms


@pytest.fixture(scope="module")
def full():
    config = StreamOmniConfig.from_dict(full_config(vision=True))
    model = memory.meta_model(config)
    context = memory.turn_context(model, 2048, 512, 2048, 2048)
    return config, model, {s: {row.name: row for row in memory.estimate(
        config, context, memory.Setting("bf16", s), model)} for s in ("none", "8bit", "4bit")}


def test_full_size_parts_have_the_spec_parameter_counts(full):
    _, _, by_setting = full
    rows = by_setting["none"]
    assert rows["LLM (32 layers + norm)"].params == 32 * LAYER + H
    assert rows["bottom speech stack (3 layers)"].params == 3 * LAYER + H
    assert rows["top speech stack (5 layers, cross-attention)"].params == 5 * (
        LAYER + 4 * H * H) + H
    for name, vocab in (("model.embed_tokens", VT), ("lm_head", VT),
                        ("audio_to_text_proj", VT), ("model.audio_embed_tokens", V),
                        ("audio_lm_head", V), ("text_to_audio_proj", V)):
        assert rows[name].params == vocab * H
        assert rows[name].bytes == 2 * vocab * H  # bf16
    assert 0.40e9 < rows["vision (SigLIP tower + projector)"].params < 0.43e9
    # doc/model.md §3.2: about 12.7 B + vocoder, tokenizer
    assert 12.6e9 < rows["total"].params < 13.0e9


def test_quantized_settings_shrink_what_they_quantize_only(full):
    _, _, rows = full
    head = rows["8bit"]["lm_head"]
    assert head.bytes == VT * H + VT * 4  # int8 values and one float32 scale per row
    assert rows["4bit"]["lm_head"].bytes < VT * H * 0.55
    for kept in ("model.embed_tokens", "vision (SigLIP tower + projector)",
                 "vocoder (flow + HiFT, fp32)"):
        assert rows["none"][kept].bytes == rows["8bit"][kept].bytes == rows["4bit"][kept].bytes
    totals = [rows[s]["total"].bytes for s in ("none", "8bit", "4bit")]
    assert totals == sorted(totals, reverse=True)
    assert 28 * memory.GIB < totals[0] < 34 * memory.GIB


def test_kv_cache_bytes_follow_the_spec_per_position(full):
    config = full[0]
    llm_only = memory.kv_cache_bytes(config, memory.Context(1, 0, 0), memory.Setting("bf16"))
    # doc/model.md §3.2: 128 KiB per position
    assert llm_only == memory.CONCURRENT_TURNS * 128 * 1024
    speech = memory.kv_cache_bytes(config, memory.Context(0, 1, 0), memory.Setting("bf16"))
    assert speech == memory.CONCURRENT_TURNS * ((12 + 20) * 1024 + 2 * H)


def test_a_setting_larger_than_the_free_memory_is_refused_with_both_numbers():
    setting = memory.Setting("bf16", "8bit")
    with pytest.raises(ConfigError, match=r"need about 20\.0 GiB on cuda:0 .* only 7\.5 GiB"):
        memory.check_fits(20 * memory.GIB, int(7.5 * memory.GIB), "cuda:0", setting)
    memory.check_fits(20 * memory.GIB, 20 * memory.GIB, "cuda:0", setting)
    assert memory.free_device_bytes("cpu") is None


def test_runtime_config_checks_the_checkpoint_against_free_memory(tmp_path):
    from stream_omni_ros.model.tiny_checkpoint import write_tiny_checkpoint

    folder = write_tiny_checkpoint(tmp_path / "tiny", variant="anyres")
    config = RuntimeConfig(model=ModelConfig(path=str(folder)),
                           cosyvoice=CosyVoiceConfig(path=str(tmp_path)))
    options = LoadOptions(local_files_only=True)
    needed = required_memory(config, StreamOmniConfig.from_dict(full_config()))
    assert needed > 20 * memory.GIB
    check_memory(config, options, 64 * memory.GIB)  # the tiny model fits easily
    with pytest.raises(ConfigError, match="only 0.0 GiB is free"):
        check_memory(config, options, 1024)


def test_memory_command_prints_the_part_and_fit_tables(capsys):
    assert memory_table.main(["--image-size", "640x480"]) == 0
    out = capsys.readouterr().out
    assert "| lm_head | 0.525 B | 0.98 | 0.49 | 0.25 |" in out
    assert "| A100 / H100 80 GB (79.5) | fits | fits | fits |" in out
    assert "| Jetson Orin Nano 8 GB (6.5) | no | no | no |" in out
