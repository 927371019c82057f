"""FlowConfig from cosyvoice.yaml's flow mapping, and the full-size module's flow.pt key set."""
import copy

import pytest
import torch

from stream_omni_ros.errors import ConfigError
from stream_omni_ros.vocoder.flow import Flow, FlowConfig

# The flow mapping of CosyVoice-300M-25Hz's cosyvoice.yaml as the safe yaml reader returns it
# (PyYAML reads 1e-06 without a dot as a string).
YAML_FLOW = {
    "_target_": "cosyvoice.flow.flow.MaskedDiffWithXvec",
    "input_size": 512, "output_size": 80, "spk_embed_dim": 192, "output_type": "mel",
    "vocab_size": 4096, "input_frame_rate": 25, "only_mask_loss": True,
    "encoder": {
        "_target_": "cosyvoice.transformer.encoder.ConformerEncoder",
        "output_size": 512, "attention_heads": 8, "linear_units": 2048, "num_blocks": 6,
        "dropout_rate": 0.1, "positional_dropout_rate": 0.1, "attention_dropout_rate": 0.1,
        "normalize_before": True, "input_layer": "linear",
        "pos_enc_layer_type": "rel_pos_espnet", "selfattention_layer_type": "rel_selfattn",
        "input_size": 512, "use_cnn_module": False, "macaron_style": False},
    "length_regulator": {
        "_target_": "cosyvoice.flow.length_regulator.InterpolateRegulator",
        "channels": 80, "sampling_ratios": [1, 1, 1, 1]},
    "decoder": {
        "_target_": "cosyvoice.flow.flow_matching.ConditionalCFM",
        "in_channels": 240, "n_spks": 1, "spk_emb_dim": 80,
        "cfm_params": {"_target_": "omegaconf.DictConfig", "content": {
            "sigma_min": "1e-06", "solver": "euler", "t_scheduler": "cosine",
            "training_cfg_rate": 0.2, "inference_cfg_rate": 0.7, "reg_loss_type": "l1"}},
        "estimator": {
            "_target_": "cosyvoice.flow.decoder.ConditionalDecoder",
            "in_channels": 320, "out_channels": 80, "channels": [256, 256], "dropout": 0.0,
            "attention_head_dim": 64, "n_blocks": 4, "num_mid_blocks": 12, "num_heads": 8,
            "act_fn": "gelu"}},
}


def test_real_yaml_gives_the_default_config() -> None:
    assert FlowConfig.from_hparams(YAML_FLOW) == FlowConfig()


def test_yaml_values_are_read_not_assumed() -> None:
    flow = copy.deepcopy(YAML_FLOW)
    flow["input_frame_rate"] = 50
    flow["encoder"]["num_blocks"] = 3
    flow["length_regulator"]["sampling_ratios"] = [1, 1]
    flow["decoder"]["estimator"]["channels"] = [128, 64]
    flow["decoder"]["cfm_params"]["content"]["inference_cfg_rate"] = 0.5
    cfg = FlowConfig.from_hparams(flow)
    assert (cfg.input_frame_rate, cfg.encoder.num_blocks, cfg.regulator_stages) == (50, 3, 2)
    assert cfg.estimator.channels == (128, 64) and cfg.inference_cfg_rate == 0.5


@pytest.mark.parametrize("path, value, message", [
    (("encoder", "use_cnn_module"), True, "flow.encoder.use_cnn_module"),
    (("encoder", "pos_enc_layer_type"), "rel_pos", "flow.encoder.pos_enc_layer_type"),
    (("decoder", "estimator", "channels"), [256, 100], "multiple of 8"),
    (("decoder", "estimator", "act_fn"), "snake", "act_fn"),
    (("decoder", "estimator", "in_channels"), 240, "estimator.in_channels = 240"),
    (("length_regulator", "channels"), 64, "flow.length_regulator.channels"),
    (("vocab_size",), "many", "flow.vocab_size"),
])
def test_unsupported_yaml_is_a_config_error(path: tuple, value: object, message: str) -> None:
    flow = copy.deepcopy(YAML_FLOW)
    section = flow
    for key in path[:-1]:
        section = section[key]
    section[path[-1]] = value
    with pytest.raises(ConfigError, match=message):
        FlowConfig.from_hparams(flow)


def expected_flow_pt_shapes() -> dict[str, tuple[int, ...]]:
    """Keys and shapes of CosyVoice-300M-25Hz flow.pt, enumerated from CosyVoice's sources."""
    s: dict[str, tuple[int, ...]] = {}

    def linear(name: str, n_in: int, n_out: int, bias: bool = True) -> None:
        s[f"{name}.weight"] = (n_out, n_in)
        if bias:
            s[f"{name}.bias"] = (n_out,)

    def norm(name: str, dim: int) -> None:
        s[f"{name}.weight"] = s[f"{name}.bias"] = (dim,)

    def conv(name: str, n_in: int, n_out: int, kernel: int) -> None:
        s[f"{name}.weight"], s[f"{name}.bias"] = (n_out, n_in, kernel), (n_out,)

    s["input_embedding.weight"] = (4096, 512)
    linear("spk_embed_affine_layer", 192, 80)
    linear("encoder.embed.out.0", 512, 512)
    norm("encoder.embed.out.1", 512)
    for i in range(6):
        layer = f"encoder.encoders.{i}"
        for proj in ("q", "k", "v", "out"):
            linear(f"{layer}.self_attn.linear_{proj}", 512, 512)
        linear(f"{layer}.self_attn.linear_pos", 512, 512, bias=False)
        s[f"{layer}.self_attn.pos_bias_u"] = s[f"{layer}.self_attn.pos_bias_v"] = (8, 64)
        linear(f"{layer}.feed_forward.w_1", 512, 2048)
        linear(f"{layer}.feed_forward.w_2", 2048, 512)
        norm(f"{layer}.norm_ff", 512)
        norm(f"{layer}.norm_mha", 512)
    norm("encoder.after_norm", 512)
    linear("encoder_proj", 512, 80)
    for i in range(4):
        conv(f"length_regulator.model.{3 * i}", 80, 80, 3)
        norm(f"length_regulator.model.{3 * i + 1}", 80)
    conv("length_regulator.model.12", 80, 80, 1)

    est = "decoder.estimator"
    linear(f"{est}.time_mlp.linear_1", 320, 1024)
    linear(f"{est}.time_mlp.linear_2", 1024, 1024)

    def stage(name: str, n_in: int) -> None:
        linear(f"{name}.0.mlp.1", 1024, 256)
        conv(f"{name}.0.block1.block.0", n_in, 256, 3)
        norm(f"{name}.0.block1.block.1", 256)
        conv(f"{name}.0.block2.block.0", 256, 256, 3)
        norm(f"{name}.0.block2.block.1", 256)
        conv(f"{name}.0.res_conv", n_in, 256, 1)
        for j in range(4):
            block = f"{name}.1.{j}"
            norm(f"{block}.norm1", 256)
            for proj in ("to_q", "to_k", "to_v"):
                linear(f"{block}.attn1.{proj}", 256, 512, bias=False)
            linear(f"{block}.attn1.to_out.0", 512, 256)
            norm(f"{block}.norm3", 256)
            linear(f"{block}.ff.net.0.proj", 256, 1024)
            linear(f"{block}.ff.net.2", 1024, 256)

    stage(f"{est}.down_blocks.0", 320)
    conv(f"{est}.down_blocks.0.2.conv", 256, 256, 3)
    stage(f"{est}.down_blocks.1", 256)
    conv(f"{est}.down_blocks.1.2", 256, 256, 3)
    for i in range(12):
        stage(f"{est}.mid_blocks.{i}", 256)
    stage(f"{est}.up_blocks.0", 512)
    s[f"{est}.up_blocks.0.2.conv.weight"] = (256, 256, 4)  # ConvTranspose1d: (in, out, k)
    s[f"{est}.up_blocks.0.2.conv.bias"] = (256,)
    stage(f"{est}.up_blocks.1", 512)
    conv(f"{est}.up_blocks.1.2", 256, 256, 3)
    conv(f"{est}.final_block.block.0", 256, 256, 3)
    norm(f"{est}.final_block.block.1", 256)
    conv(f"{est}.final_proj", 256, 80, 1)
    return s


def test_full_size_flow_has_the_flow_pt_keys_and_shapes() -> None:
    with torch.device("meta"):
        flow = Flow(FlowConfig())
    actual = {k: tuple(v.shape) for k, v in flow.state_dict().items()}
    expected = expected_flow_pt_shapes()
    assert sorted(set(actual) ^ set(expected)) == []
    assert {k for k in expected if actual[k] != expected[k]} == set()
    n_params = sum(v.numel() for v in flow.state_dict().values())
    assert 100e6 < n_params < 110e6  # flow.pt is about 420 MB of fp32
