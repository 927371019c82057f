"""The benchmark's outputs: bench.json, bench.md (Markdown tables) and the timeline PNG."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stream_omni_ros.bench.config import BenchConfig
from stream_omni_ros.bench.records import Percentiles, TurnRecord, summarize
from stream_omni_ros.bench.targets import TargetCheck

PATHS = ("engine", "reference", "ros_passthrough", "direct_passthrough")
TURN_ROWS = (("endpoint -> final transcript [ms]", "endpoint_to_transcript_s", 1e3),
             ("endpoint -> first text token [ms]", "endpoint_to_first_text_s", 1e3),
             ("endpoint -> first audio chunk [ms]", "endpoint_to_first_audio_s", 1e3),
             ("endpoint -> turn finished [ms]", "total_s", 1e3),
             ("text tokens/s", "text_tokens_per_s", 1.0),
             ("real-time factor (compute / audio)", "real_time_factor", 1.0),
             ("answer audio [s]", "audio_s", 1.0))


@dataclass(frozen=True)
class BenchResult:
    """Everything one run measured."""

    config: BenchConfig
    device_name: str
    records: dict[str, list[TurnRecord]]  # path -> one record per turn
    steps: dict[str, float]
    vocoder: dict[str, float]
    messages: dict[str, float]
    ros: dict[str, float] = field(default_factory=dict)
    targets: list[TargetCheck] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, Percentiles]]:
        """p50/p95 per path and figure."""
        return {path: summarize(records) for path, records in self.records.items()}

    def to_json(self) -> dict:
        """Plain JSON-serialisable dict of the whole result."""
        return {
            "config": asdict(self.config), "device": self.device_name,
            "turns": {p: [r.to_json() for r in rs] for p, rs in self.records.items()},
            "summary": {p: {k: asdict(v) for k, v in s.items()}
                        for p, s in self.summary().items()},
            "steps": self.steps, "vocoder": self.vocoder, "messages": self.messages,
            "ros": self.ros,
            "targets": [{**asdict(t), "mark": t.mark} for t in self.targets]}


def _shown(value: float | None, scale: float = 1.0) -> str:
    if value is None:
        return "-"
    scaled = value * scale
    return f"{scaled:.1f}" if abs(scaled) >= 10 else f"{scaled:.3g}"


def turn_table(result: BenchResult) -> list[str]:
    """Per-turn figures: p50 / p95 of every path that ran."""
    summary = result.summary()
    paths = [p for p in PATHS if p in summary]
    lines = ["| figure | " + " | ".join(f"{p} p50 | {p} p95" for p in paths) + " |",
             "|---|" + "---|" * (2 * len(paths))]
    for title, name, scale in TURN_ROWS:
        cells = [f"{_shown(summary[p][name].p50, scale)} | {_shown(summary[p][name].p95, scale)}"
                 for p in paths]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return lines


def figure_table(title: str, figures: dict[str, float]) -> list[str]:
    """Name/value rows; *_s figures shown in ms."""
    lines = [f"| {title} | value |", "|---|---|"]
    for name, value in figures.items():
        if name.endswith("_s"):
            lines.append(f"| {name[:-2]} [ms] | {_shown(value, 1e3)} |")
        else:
            lines.append(f"| {name} | {_shown(value)} |")
    return lines


def target_table(targets: list[TargetCheck]) -> list[str]:
    """Targets with measured ratio, limit and mark."""
    lines = ["| target | measured | limit | result |", "|---|---|---|---|"]
    for t in targets:
        limit = f"{'<=' if t.at_most else '>='} {t.limit:g}"
        note = f" ({t.note})" if t.note else ""
        lines.append(f"| {t.name} | {_shown(t.value)} | {limit} | {t.mark}{note} |")
    return lines


def markdown(result: BenchResult) -> str:
    """The whole report as Markdown."""
    c = result.config
    head = [f"# stream-omni-ros bench: {c.size} model on {result.device_name} "
            f"({c.model_dtype}, vocoder {c.flow_dtype})", "",
            f"{c.turns} spoken turns with a {c.image_width}x{c.image_height} image (engine: "
            f"frame at {c.frame_at.replace('_', ' ')}); fixed answers of {c.units} units "
            f"({c.units / 25:.1f} s) and at most {c.text_tokens} text tokens; p50/p95 over "
            "turns.", ""]
    sections = [turn_table(result), target_table(result.targets),
                figure_table("model steps and baselines (b), (c)", result.steps),
                figure_table("vocoder", result.vocoder),
                figure_table("cost per message", result.messages)]
    if result.ros:
        sections.append(figure_table("ROS overhead (pass-through model)", result.ros))
    body = []
    for section in sections:
        body += section + [""]
    return "\n".join(head + body)


def write_outputs(result: BenchResult, out_dir: Path) -> dict[str, Path]:
    """Write bench.json, bench.md and timeline.png; return their paths."""
    from stream_omni_ros.bench.timeline import plot_timeline

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "bench.json", "markdown": out_dir / "bench.md",
             "timeline": out_dir / "timeline.png"}
    paths["json"].write_text(json.dumps(result.to_json(), indent=2))
    paths["markdown"].write_text(markdown(result))
    engine_turns = result.records.get("engine", [])
    reference = result.records.get("reference", [])
    plot_timeline(engine_turns[-1] if engine_turns else None,
                  reference[-1] if reference else None, paths["timeline"])
    return paths
