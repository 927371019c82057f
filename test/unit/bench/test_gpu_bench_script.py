"""scripts/gpu_bench.sh runs every part in its tiny CPU mode, so that a change breaking the GPU
check fails here first (the GPU machine runs the same script at full size)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PARTS = ("checks", "model", "memory", "vocoder", "bench")


def test_gpu_bench_script_passes_every_part_with_the_tiny_model_on_cpu(tmp_path):
    env = {**os.environ, "SIZE": "tiny", "DEVICE": "cpu", "PYTHON": sys.executable,
           "OUT": str(tmp_path / "out"), "KIT": str(tmp_path / "no_kit")}
    result = subprocess.run(["bash", str(ROOT / "scripts/gpu_bench.sh")], env=env, text=True,
                            capture_output=True, timeout=900, stdin=subprocess.DEVNULL,
                            cwd=ROOT)
    out = tmp_path / "out"
    summary = (out / "summary.txt").read_text()
    assert result.returncode == 0, summary + result.stdout[-3000:]
    assert [line.split()[:2] for line in summary.splitlines()
            if line.split()[:1] and line.split()[0] in PARTS] == [[p, "ok"] for p in PARTS]
    model_log = (out / "model_bench.log").read_text()
    for setting in ("8bit", "4bit"):
        assert f"{setting} weights against fp32 (8 greedy steps)" in model_log
    assert "top1_agreement" in model_log and "| A100 / H100 80 GB" in model_log
    assert {"bench.json", "bench.md", "timeline.png"} <= {p.name for p in out.iterdir()}
