"""HiFT generator: released-checkpoint key layout, weight norm, lengths, determinism."""
import pytest
import torch
from torch import nn

from stream_omni_ros.errors import ConfigError
from stream_omni_ros.vocoder.hift import HiFTGenerator, HiftConfig, tiny_hift_config

# the hift: section of the real CosyVoice-300M-25Hz cosyvoice.yaml, as the safe reader returns it
REAL_HIFT_HPARAMS = {
    "_target_": "cosyvoice.hifigan.generator.HiFTGenerator", "in_channels": 80,
    "base_channels": 512, "nb_harmonics": 8, "sampling_rate": 22050, "nsf_alpha": 0.1,
    "nsf_sigma": 0.003, "nsf_voiced_threshold": 10, "upsample_rates": [8, 8],
    "upsample_kernel_sizes": [16, 16], "istft_params": {"n_fft": 16, "hop_len": 4},
    "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5]] * 3,
    "source_resblock_kernel_sizes": [7, 11], "source_resblock_dilation_sizes": [[1, 3, 5]] * 2,
    "lrelu_slope": 0.1, "audio_limit": 0.99,
    "f0_predictor": {"_target_": "cosyvoice.hifigan.f0_predictor.ConvRNNF0Predictor",
                     "num_class": 1, "in_channels": 80, "cond_channels": 512},
}


def test_real_hparams_give_the_released_key_layout() -> None:
    cfg = HiftConfig.from_hparams(REAL_HIFT_HPARAMS)
    assert cfg == HiftConfig() and cfg.samples_per_frame == 256
    shapes = {k: tuple(v.shape) for k, v in HiFTGenerator(cfg).state_dict().items()}
    assert shapes["m_source.l_linear.weight"] == (1, 9)
    assert shapes["conv_pre.weight_g"] == (512, 1, 1)
    assert shapes["conv_pre.weight_v"] == (512, 80, 7)
    assert shapes["ups.0.weight_g"] == (512, 1, 1)  # ConvTranspose1d: norm over dims 1, 2
    assert shapes["ups.1.weight_v"] == (256, 128, 16)
    assert shapes["source_downs.0.weight"] == (256, 18, 16)
    assert shapes["source_downs.1.weight"] == (128, 18, 1)
    assert shapes["source_resblocks.1.convs1.2.weight_v"] == (128, 128, 11)
    assert shapes["resblocks.5.activations2.2.alpha"] == (128,)
    assert shapes["conv_post.weight_v"] == (18, 128, 7)
    assert shapes["f0_predictor.condnet.8.weight_g"] == (512, 1, 1)
    assert shapes["f0_predictor.classifier.weight"] == (1, 512)
    assert not any(k.endswith(".weight") and k.replace(".weight", ".weight_g") in shapes
                   for k in shapes)
    assert sum(torch.Size(s).numel() for s in shapes.values()) > 20_000_000


def test_unresolved_or_malformed_hparams_name_the_field() -> None:
    with pytest.raises(ConfigError, match="hift.sampling_rate"):
        HiftConfig.from_hparams({**REAL_HIFT_HPARAMS, "sampling_rate": None})
    with pytest.raises(ConfigError, match="hift.istft_params.n_fft"):
        HiftConfig.from_hparams({**REAL_HIFT_HPARAMS, "istft_params": {"n_fft": "big"}})
    with pytest.raises(ConfigError, match="upsample"):
        HiftConfig.from_hparams({**REAL_HIFT_HPARAMS, "upsample_rates": [8, 8, 2]})


@pytest.mark.parametrize("transposed", [False, True])
def test_weight_norm_matches_torch_weight_norm(transposed: bool) -> None:
    torch.manual_seed(0)
    hift = HiFTGenerator(tiny_hift_config())
    ours = hift.ups[0] if transposed else hift.conv_pre
    with torch.no_grad():
        ours.weight_g.uniform_(0.5, 2.0)
    conv = (nn.ConvTranspose1d(16, 8, 16, 8, padding=4) if transposed
            else nn.Conv1d(80, 16, 7, padding=3))
    conv = nn.utils.parametrizations.weight_norm(conv, dim=0)
    with torch.no_grad():
        conv.parametrizations.weight.original0.copy_(ours.weight_g)
        conv.parametrizations.weight.original1.copy_(ours.weight_v)
        conv.bias.copy_(torch.randn_like(conv.bias))
        ours.bias.copy_(conv.bias)
    x = torch.randn(1, conv.in_channels, 12)
    torch.testing.assert_close(ours(x), conv(x))
    ours.fold()
    torch.testing.assert_close(ours(x), conv(x))


def test_folding_keeps_output_and_reload_refreshes_it() -> None:
    torch.manual_seed(1)
    hift = HiFTGenerator(tiny_hift_config())
    mel = torch.randn(1, 80, 20)
    with torch.inference_mode():
        before = hift.mel_to_waveform(mel, torch.Generator().manual_seed(3))
        hift.fold_weight_norm()
        folded = hift.mel_to_waveform(mel, torch.Generator().manual_seed(3))
    torch.testing.assert_close(folded, before)
    state = {k: v * 1.5 if k.endswith("conv_pre.weight_g") else v
             for k, v in hift.state_dict().items()}
    hift.load_state_dict(state)
    with torch.inference_mode():
        reloaded = hift.mel_to_waveform(mel, torch.Generator().manual_seed(3))
    assert not torch.allclose(reloaded, before)


def test_waveform_length_bounds_and_seed_determinism() -> None:
    torch.manual_seed(2)
    hift = HiFTGenerator(tiny_hift_config()).eval()
    mel = torch.randn(1, 80, 37)
    with torch.inference_mode():
        first = hift.mel_to_waveform(mel, torch.Generator().manual_seed(5))
        again = hift.mel_to_waveform(mel, torch.Generator().manual_seed(5))
        other = hift.mel_to_waveform(mel, torch.Generator().manual_seed(6))
    assert first.shape == (1, 37 * 256)
    assert first.abs().max() <= hift.cfg.audio_limit
    assert torch.equal(first, again) and not torch.equal(first, other)
