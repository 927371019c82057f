"""wav_source_node and audio_sink_node, each in its own process, carry speech unchanged."""
import json

from stream_omni_ros.apps.loopback_check import run_audio_loopback


def test_spoken_wav_arrives_sample_exact(tmp_path):
    result = run_audio_loopback(tmp_path, "Please bring me the red cup from the kitchen.")
    assert result.sent_samples > 16000  # espeak made at least a second of speech
    assert result.identical, (result.sent_samples, result.received_samples)
    turns = [json.loads(line) for line in
             (tmp_path / "received" / "turns.jsonl").read_text().splitlines()]
    assert sum(t["lost_chunks"] for t in turns) == 0
    assert abs(sum(t["audio_s"] for t in turns) - result.sent_samples / 16000) < 1e-3
