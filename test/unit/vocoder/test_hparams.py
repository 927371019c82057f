"""The safe cosyvoice.yaml reader: values are read, tags never import or call anything."""
from pathlib import Path

import pytest

from stream_omni_ros.errors import ConfigError
from stream_omni_ros.vocoder.hparams import read_cosyvoice_yaml


def test_tiny_yaml_sections_and_refs(tiny_folder: Path) -> None:
    hparams = read_cosyvoice_yaml(tiny_folder / "cosyvoice.yaml")
    assert hparams["flow"]["_target_"] == "cosyvoice.flow.flow.MaskedDiffWithXvec"
    assert hparams["flow"]["spk_embed_dim"] == 192  # !ref <spk_embed_dim>
    assert hparams["flow"]["encoder"]["_target_"].endswith("ConformerEncoder")
    assert hparams["flow"]["decoder"]["cfm_params"]["content"]["inference_cfg_rate"] == 0.7
    assert hparams["hift"]["sampling_rate"] == 22050  # !ref <sample_rate>
    assert hparams["hift"]["istft_params"] == {"n_fft": 16, "hop_len": 4}
    assert hparams["hift"]["f0_predictor"]["cond_channels"] == 16
    # training-only !name: / !apply: entries are inert
    assert hparams["get_tokenizer"] is None and hparams["__set_seed1"] is None
    assert hparams["data_pipeline"] == [None, None]


def test_dangerous_tags_stay_inert(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(
        f"a: !apply:os.system ['touch {marker}']\n"
        f"b: !new:os.system\n    command: 'touch {marker}'\n"
        f"c: !!python/object/apply:os.system ['touch {marker}']\n"
        f"d: !name:builtins.exec\n"
        f"e: !new:subprocess.run [['touch', '{marker}']]\n", encoding="utf-8")
    hparams = read_cosyvoice_yaml(path)
    assert not marker.exists()
    assert hparams["a"] is None and hparams["c"] is None and hparams["d"] is None
    assert hparams["b"] == {"command": f"touch {marker}", "_target_": "os.system"}
    assert hparams["e"] == {"_target_": "subprocess.run", "_args_": [["touch", str(marker)]]}


def test_refs_resolve_only_to_plain_top_level_values(tmp_path: Path) -> None:
    path = tmp_path / "refs.yaml"
    path.write_text("rate: 22050\nsizes: [1, 2]\nnested: {x: 1}\n"
                    "m:\n  r: !ref <rate>\n  s: !ref <sizes>\n  n: !ref <nested>\n"
                    "  expr: !ref <rate> // 2\n  missing: !ref <nope>\n", encoding="utf-8")
    section = read_cosyvoice_yaml(path)["m"]
    assert section == {"r": 22050, "s": [1, 2], "n": None, "expr": None, "missing": None}


@pytest.mark.parametrize("text", ["a: [1, 2\n", "- 1\n- 2\n"])
def test_malformed_yaml_is_a_config_error_naming_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="broken.yaml"):
        read_cosyvoice_yaml(path)
