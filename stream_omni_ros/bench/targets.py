"""The issue's targets as ratios with pass/fail marks."""
from __future__ import annotations

from dataclasses import dataclass

from stream_omni_ros.bench.records import Percentiles

MIN_ANSWER_S = 5.0  # the first-audio target is about answers of 5 s or more


@dataclass(frozen=True)
class TargetCheck:
    """One target: measured value against its limit; passed None = not applicable here."""

    name: str
    value: float | None
    limit: float
    at_most: bool  # True: value <= limit passes; False: value >= limit passes
    passed: bool | None
    note: str = ""

    @property
    def mark(self) -> str:
        """PASS, FAIL or n/a."""
        return {True: "PASS", False: "FAIL", None: "n/a"}[self.passed]


def check(name: str, value: float | None, limit: float, at_most: bool,
          applies: bool = True, note: str = "") -> TargetCheck:
    """A TargetCheck; not applicable when it does not apply here or nothing was measured."""
    if not applies or value is None:
        return TargetCheck(name, value, limit, at_most, None, note)
    return TargetCheck(name, value, limit, at_most, value <= limit if at_most else value >= limit,
                       note)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, None when either is missing or the denominator is 0."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def evaluate_targets(engine: dict[str, Percentiles], reference: dict[str, Percentiles],
                     steps: dict[str, float], ros_overhead_fraction: float | None,
                     device_name: str) -> list[TargetCheck]:
    """Every target of the issue, evaluated on p50 values of this run."""
    h100 = "H100" in device_name
    not_h100 = "" if h100 else "H100 only"
    long_answer = (engine["audio_s"].p50 or 0.0) >= MIN_ANSWER_S
    return [
        check("first audio / reference (a) first audio", ratio(
            engine["endpoint_to_first_audio_s"].p50,
            reference["endpoint_to_first_audio_s"].p50), 0.1, True, long_answer,
            "" if long_answer else f"answers shorter than {MIN_ANSWER_S} s"),
        check("ROS overhead / model compute per turn", ros_overhead_fraction, 0.02, True,
              note="" if ros_overhead_fraction is not None else "ROS part not run"),
        check("decode / memory-bandwidth bound (b)", steps.get("decode_fraction_of_bound"),
              0.7, False, h100, not_h100),
        check("decode speed-up over transformers eager (c)",
              steps.get("decode_speedup_over_hf_eager"), 3.0, False, h100, not_h100),
        check("endpoint -> first text token [s]", engine["endpoint_to_first_text_s"].p50,
              0.060, True, h100, not_h100),
        check("endpoint -> first audio [s]", engine["endpoint_to_first_audio_s"].p50, 0.250,
              True, h100, not_h100),
    ]
