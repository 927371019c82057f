"""Write a tiny random CosyVoice folder in the real on-disk format (doc/model.md §12.4) for tests.

The yaml uses the real hyperpyyaml tags, including training-only ``!name:`` / ``!apply:`` entries
that the safe reader must ignore; weights are saved as plain state dicts with the same keys as
the released files (HiFT with ``weight_g`` / ``weight_v``).
"""
from __future__ import annotations

from pathlib import Path

import torch

from .flow import Flow, FlowConfig
from .hift import HiFTGenerator, HiftConfig, WeightNormConv1d
from .hparams import read_cosyvoice_yaml

TINY_SPEAKER = "英文女"

_TINY_YAML = """\
# tiny CosyVoice-300M-25Hz look-alike (random weights) for tests
__set_seed1: !apply:random.seed [1986]
__set_seed3: !apply:torch.manual_seed [1986]

sample_rate: 22050
spk_embed_dim: 192

flow: !new:cosyvoice.flow.flow.MaskedDiffWithXvec
    input_size: 16
    output_size: 80
    spk_embed_dim: !ref <spk_embed_dim>
    output_type: 'mel'
    vocab_size: 32
    input_frame_rate: {input_frame_rate}
    only_mask_loss: True
    encoder: !new:cosyvoice.transformer.encoder.ConformerEncoder
        output_size: 16
        attention_heads: 2
        linear_units: 32
        num_blocks: 1
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.1
        normalize_before: True
        input_layer: 'linear'
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        input_size: 16
        use_cnn_module: False
        macaron_style: False
    length_regulator: !new:cosyvoice.flow.length_regulator.InterpolateRegulator
        channels: 80
        sampling_ratios: [1]
    decoder: !new:cosyvoice.flow.flow_matching.ConditionalCFM
        in_channels: 240
        n_spks: 1
        spk_emb_dim: 80
        cfm_params: !new:omegaconf.DictConfig
            content:
                sigma_min: 1e-06
                solver: 'euler'
                t_scheduler: 'cosine'
                training_cfg_rate: 0.2
                inference_cfg_rate: 0.7
                reg_loss_type: 'l1'
        estimator: !new:cosyvoice.flow.decoder.ConditionalDecoder
            in_channels: 320
            out_channels: 80
            channels: [16, 16]
            dropout: 0.0
            attention_head_dim: 8
            n_blocks: 1
            num_mid_blocks: 1
            num_heads: 2
            act_fn: 'gelu'

hift: !new:cosyvoice.hifigan.generator.HiFTGenerator
    in_channels: 80
    base_channels: 16
    nb_harmonics: 1
    sampling_rate: !ref <sample_rate>
    nsf_alpha: 0.1
    nsf_sigma: 0.003
    nsf_voiced_threshold: 10
    upsample_rates: [8, 8]
    upsample_kernel_sizes: [16, 16]
    istft_params:
        n_fft: 16
        hop_len: 4
    resblock_kernel_sizes: [3]
    resblock_dilation_sizes: [[1]]
    source_resblock_kernel_sizes: [3, 3]
    source_resblock_dilation_sizes: [[1], [1]]
    lrelu_slope: 0.1
    audio_limit: 0.99
    f0_predictor: !new:cosyvoice.hifigan.f0_predictor.ConvRNNF0Predictor
        num_class: 1
        in_channels: 80
        cond_channels: 16

# training-only entries: must stay inert
get_tokenizer: !name:whisper.tokenizer.get_tokenizer
    multilingual: True
feat_extractor: !name:matcha.utils.audio.mel_spectrogram
    n_fft: 1024
    num_mels: 80
    sampling_rate: !ref <sample_rate>
compute_fbank: !name:cosyvoice.dataset.processor.compute_fbank
    feat_extractor: !ref <feat_extractor>
data_pipeline: [
    !ref <get_tokenizer>,
    !ref <compute_fbank>,
]
"""


def write_tiny_cosyvoice(folder: str | Path, seed: int = 0, input_frame_rate: int = 25
                         ) -> Path:
    """Write cosyvoice.yaml, flow.pt, hift.pt and spk2info.pt with tiny random weights."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    yaml_path = folder / "cosyvoice.yaml"
    yaml_path.write_text(_TINY_YAML.format(input_frame_rate=input_frame_rate), encoding="utf-8")
    hparams = read_cosyvoice_yaml(yaml_path)
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(seed)
        flow = Flow(FlowConfig.from_hparams(hparams["flow"]))
        hift = HiFTGenerator(HiftConfig.from_hparams(hparams["hift"]))
        embedding = torch.randn(1, flow.cfg.spk_embed_dim)
    _make_audible(hift)
    torch.save(flow.state_dict(), folder / "flow.pt")
    torch.save(hift.state_dict(), folder / "hift.pt")
    torch.save({TINY_SPEAKER: {"embedding": embedding}}, folder / "spk2info.pt")
    return folder


def _make_audible(hift: HiFTGenerator) -> None:
    """Random weights but a voiced F0 (~150 Hz) and moderate magnitudes, like a real vocoder."""
    with torch.no_grad():
        for module in hift.modules():
            if isinstance(module, WeightNormConv1d):
                module.weight_g.mul_(10.0)  # 0.01-std init alone decays to near silence
        hift.f0_predictor.classifier.bias.fill_(150.0)
        hift.f0_predictor.classifier.weight.mul_(10.0)
        hift.conv_post.bias.fill_(-2.0)  # exp(-2): magnitudes well below the clamp
