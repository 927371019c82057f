"""The demo's cached tiny asset set: written once, reused while intact, rebuilt when damaged."""
import json

from stream_omni_ros.model.checkpoint import LoadOptions, load_stream_omni
from stream_omni_ros.tiny_assets import MANIFEST_FILE, asset_problems, ensure_tiny_assets


def test_tiny_set_is_reused_while_intact_and_rebuilt_when_damaged(tmp_path):
    first = ensure_tiny_assets(tmp_path, version="test")
    assert not first.reused
    assert (first.cosyvoice_path / "speech_tokenizer_v1.onnx").is_file()
    assert (first.cosyvoice_path / "hift.pt").is_file()
    assert load_stream_omni(str(first.model_path), LoadOptions(device="cpu", dtype="fp32",
                                                                 local_files_only=True))
    manifest = json.loads((first.root / MANIFEST_FILE).read_text())
    assert "cosyvoice-tiny/flow.pt" in manifest["files"]

    again = ensure_tiny_assets(tmp_path, version="test")
    assert again.reused and again.root == first.root

    flow = first.cosyvoice_path / "flow.pt"
    flow.write_bytes(flow.read_bytes()[:100])  # an interrupted copy, say
    assert any("flow.pt" in problem for problem in asset_problems(first.root, "test"))
    repaired = ensure_tiny_assets(tmp_path, version="test")
    assert not repaired.reused and asset_problems(repaired.root, "test") == []
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-test"]  # no build folders left


def test_another_version_gets_its_own_folder(tmp_path):
    (tmp_path / "tiny-old").mkdir()
    (tmp_path / "tiny-old" / MANIFEST_FILE).write_text(json.dumps({"version": "old"}))
    assets = ensure_tiny_assets(tmp_path, version="new")
    assert assets.root.name == "tiny-new" and not assets.reused
    assert asset_problems(tmp_path / "tiny-old", "new")  # the old set is not taken for new


def test_building_a_set_removes_sets_unused_for_a_week(tmp_path):
    import os
    import time

    from stream_omni_ros.tiny_assets import STALE_AFTER_S, prune_stale_sets

    week_ago = time.time() - STALE_AFTER_S - 60
    for name in ("tiny-stale", ".tiny-stale-crashed-build", "tiny-recent"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "flow.pt").write_bytes(b"x")
    for name in ("tiny-stale", ".tiny-stale-crashed-build"):
        os.utime(tmp_path / name, (week_ago, week_ago))
    assets = ensure_tiny_assets(tmp_path, version="new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-new", "tiny-recent"]
    os.utime(assets.root, (week_ago, week_ago))
    assert ensure_tiny_assets(tmp_path, version="new").reused  # a use marks the set fresh
    assert prune_stale_sets(tmp_path, keep=tmp_path / "tiny-recent") == []


def test_sets_of_every_kind_are_pruned_and_unknown_kinds_refused(tmp_path):
    import os
    import time

    import pytest

    from stream_omni_ros.errors import ConfigError
    from stream_omni_ros.tiny_assets import STALE_AFTER_S, prune_stale_sets

    week_ago = time.time() - STALE_AFTER_S - 60
    for name in ("demo-stale", "tokenizer-full-stale", ".demo-stale-build", "demo-recent"):
        (tmp_path / name).mkdir()
    for name in ("demo-stale", "tokenizer-full-stale", ".demo-stale-build"):
        os.utime(tmp_path / name, (week_ago, week_ago))
    prune_stale_sets(tmp_path, keep=tmp_path / "demo-recent")
    assert [p.name for p in tmp_path.iterdir()] == ["demo-recent"]
    with pytest.raises(ConfigError, match="kind"):
        ensure_tiny_assets(tmp_path, kind="huge")
    with pytest.raises(ConfigError, match="ensure_full_speech_tokenizer"):
        ensure_tiny_assets(tmp_path, kind="tokenizer-full")
