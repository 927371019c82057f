"""What the demo claims at the end, each claim checked against what really arrived.

The demo prints a success only through `report`, and only when every check passed.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import soundfile

from stream_omni_ros.errors import StreamOmniError
from stream_omni_ros.msg import ResponseText, Transcript

ACCEPTED_STOP_REASONS = ("eos", "max_tokens", "max_units")


@dataclass
class Arrivals:
    """What the demo received from omni_node (filled in by the observer's callbacks)."""

    transcript: Transcript | None = None
    response: ResponseText | None = None
    speech_chunks: int = 0


@dataclass(frozen=True)
class Check:
    """One verified claim of the demo and whether it held."""

    passed: bool
    text: str


def answer_wav(out_dir: Path, turn_id: int) -> Path | None:
    """The WAV audio_sink_node wrote for a turn (from its turns.jsonl), or None."""
    log = out_dir / "turns.jsonl"
    if not log.is_file():
        return None
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:  # a line audio_sink_node is still appending
            continue
        if entry.get("turn_id") == turn_id and (out_dir / entry["file"]).is_file():
            return out_dir / entry["file"]
    return None


def check_wav(out_dir: Path, response: ResponseText | None, cosyvoice_path: str) -> Check:
    """The answer WAV exists, has the vocoder's sample rate and a non-zero duration."""
    from stream_omni_ros.vocoder.hparams import read_cosyvoice_yaml

    path = None if response is None else answer_wav(out_dir, response.turn_id)
    if path is None:
        return Check(False, f"no answer WAV was written to {out_dir} (audio_sink_node)")
    try:
        expected_rate = int(read_cosyvoice_yaml(Path(cosyvoice_path) / "cosyvoice.yaml")
                            ["sample_rate"])
    except (StreamOmniError, KeyError, ValueError) as error:
        return Check(False, f"cannot read the expected sample rate: {error!r}")
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, OSError) as error:  # LibsndfileError is a RuntimeError
        return Check(False, f"answer WAV {path} is unreadable: {error}")
    passed = info.samplerate == expected_rate and info.frames > 0
    return Check(passed, f"answer WAV {path}: {info.samplerate} Hz (expected {expected_rate} Hz"
                         f" from cosyvoice.yaml), {info.duration:.2f} s (expected > 0)")


def check_arrivals(arrivals: Arrivals, out_dir: Path, cosyvoice_path: str,
                   bringup_status: int) -> list[Check]:
    """Every claim the demo makes at the end, each checked against what really arrived."""
    transcript, response = arrivals.transcript, arrivals.response
    return [
        Check(transcript is not None, "no final transcript arrived on asr/final"
              if transcript is None else f"final transcript arrived on asr/final "
              f"(turn {transcript.turn_id}): {transcript.text!r}"),
        Check(response is not None and response.stop_reason in ACCEPTED_STOP_REASONS,
              "no final response arrived on response/final" if response is None else
              f"final response arrived on response/final (stop reason {response.stop_reason!r},"
              f" expected one of {ACCEPTED_STOP_REASONS}; {len(response.text)} characters)"),
        check_wav(out_dir, response, cosyvoice_path),
        Check(bringup_status == 0, f"the bringup process shut down with status "
                                   f"{bringup_status} (expected 0)"),
    ]


def report(checks: list[Check], failure: str, tiny: bool, log: Path) -> int:
    """Print every check (and why the run stopped early); 0 only if all passed."""
    print("\nchecks:")
    for check in checks:
        print(f"  [{'PASS' if check.passed else 'FAIL'}] {check.text}")
    passed = not failure and all(check.passed for check in checks)
    if failure:
        print(f"  [FAIL] {failure}")
    if not passed:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        print(f"DEMO FAILED. Last lines of {log}:\n  " + "\n  ".join(tail), file=sys.stderr)
        return 1
    print("DEMO OK: every check above passed" + (
        " (with TINY RANDOM weights: the words are meaningless)" if tiny else ""))
    return 0
