"""The bench command on the tiny CPU model: two spoken turns, JSON, Markdown table and PNG."""
from __future__ import annotations

import importlib.util
import json

import pytest

from stream_omni_ros.bench.__main__ import main

FAST = ["--turns", "2", "--pace", "8", "--text-tokens", "12", "--units", "60",
        "--step-repeats", "3", "--step-prompt-len", "64", "--message-repeats", "5"]


def ros_installed() -> bool:
    """rclpy and the package's generated messages are importable (env.sh sourced)."""
    try:
        return (importlib.util.find_spec("rclpy") is not None
                and importlib.util.find_spec("stream_omni_ros.msg") is not None)
    except ModuleNotFoundError:
        return False


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory):
    import shutil
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is needed to speak the benchmark questions")
    out = tmp_path_factory.mktemp("bench")
    assert main(FAST + ["--out", str(out)]) == 0
    return out


def test_json_has_every_turn_and_figure(bench_out):
    result = json.loads((bench_out / "bench.json").read_text())
    paths = {"engine", "reference"} | ({"ros_passthrough", "direct_passthrough"}
                                       if ros_installed() else set())
    assert set(result["turns"]) == paths
    for path in paths:
        assert [t["turn"] for t in result["turns"][path]] == [0, 1]
    engine = result["summary"]["engine"]
    for name in ("endpoint_to_transcript_s", "endpoint_to_first_text_s",
                 "endpoint_to_first_audio_s", "total_s", "text_tokens_per_s"):
        assert 0 < engine[name]["p50"] <= engine[name]["p95"], name
    # fixed response lengths: 60 units -> 2.4 s of 22050 Hz audio in every turn of every path;
    # the text leads by 3 tokens and then advances on CTC triggers, up to its 12-token limit
    for turn in result["turns"]["engine"] + result["turns"]["reference"]:
        assert 3 <= turn["text_tokens"] <= 12 and turn["audio_s"] == pytest.approx(2.4, abs=0.05)
    # streaming: the engine's first audio comes before its turn ends; the reference's does not
    first = engine["endpoint_to_first_audio_s"]["p50"]
    assert first < engine["total_s"]["p50"]
    reference = result["summary"]["reference"]
    assert reference["endpoint_to_first_audio_s"]["p50"] == reference["total_s"]["p50"]
    for name in ("unit_step_s", "text_step_s", "hf_eager_text_step_s"):
        assert result["steps"][name] > 0
    assert result["vocoder"]["offline_rtf"] > 0
    assert result["messages"]["per_image_s"] > 0 < result["messages"]["per_audio_message_s"]
    marks = {t["name"]: t["mark"] for t in result["targets"]}
    assert len(marks) == 6 and set(marks.values()) <= {"PASS", "FAIL", "n/a"}
    if ros_installed():
        assert result["ros"]["overhead_fraction_of_model_compute"] is not None


def test_markdown_table_and_timeline_png(bench_out):
    table = (bench_out / "bench.md").read_text()
    for row in ("| endpoint -> final transcript [ms] |", "| endpoint -> first text token [ms] |",
                "| endpoint -> first audio chunk [ms] |", "| text tokens/s |",
                "| first audio / reference (a) first audio |", "| unit_step [ms] |",
                "| offline_rtf |", "| per_image [ms] |", "| per_audio_message [ms] |"):
        assert row in table, row
    png = (bench_out / "timeline.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_full_size_without_cuda_fails_clearly(tmp_path, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["--size", "full", "--turns", "1",
                 "--out", str(tmp_path)]) == 1
    assert "CUDA" in capsys.readouterr().err


def test_targets_apply_only_where_the_issue_sets_them():
    from stream_omni_ros.bench.records import percentiles
    from stream_omni_ros.bench.targets import evaluate_targets

    def summary(first_audio: float, audio_s: float) -> dict:
        names = ("endpoint_to_first_audio_s", "endpoint_to_first_text_s", "audio_s")
        return {n: percentiles([v]) for n, v in zip(names, (first_audio, 0.05, audio_s))}

    steps = {"decode_fraction_of_bound": 0.8, "decode_speedup_over_hf_eager": 2.0}
    long = evaluate_targets(summary(0.2, 6.0), summary(3.0, 6.0), steps, 0.01, "NVIDIA H100")
    assert [t.mark for t in long] == ["PASS", "PASS", "PASS", "FAIL", "PASS", "PASS"]
    short = evaluate_targets(summary(0.2, 2.0), summary(3.0, 2.0), steps, None, "cpu")
    assert [t.mark for t in short] == ["n/a"] * 6
