"""The benchmark runs on the tiny checkpoint; its transformers baseline reads our weights."""
from stream_omni_ros.bench import model_bench as bench


def test_transformers_baseline_matches_our_llm(tiny_loaded):
    result = bench.hf_eager_step_seconds(tiny_loaded, prompt_len=16, repeats=2)
    assert result["max_logit_diff"] < 1e-4 and result["text_step_s"] > 0


def test_bench_cli_prints_every_section(capsys):
    bench.main(["--size", "tiny", "--repeats", "2", "--prompt-len", "16", "--input-units", "8",
                "--text-tokens", "4", "--units", "6"])
    out = capsys.readouterr().out
    for row in ("prefill_s", "text_step_s", "unit_step_s", "turn speech_to_speech",
                "first_unit_s", "hf_eager_text_step_s", "ours_speedup_decode"):
        assert row in out, row
    assert "units                        6" in out
