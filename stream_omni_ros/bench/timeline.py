"""PNG timeline of one turn: when each stream's first and last message arrived."""
from __future__ import annotations

from pathlib import Path

from stream_omni_ros.bench.records import TurnRecord

STREAM_COLORS = {"microphone": "tab:gray", "transcript": "tab:blue",
                 "response text": "tab:green", "audio": "tab:orange"}


def plot_timeline(turn: TurnRecord | None, reference: TurnRecord | None, path: Path) -> None:
    """Bars from first to last message of each stream, seconds after the endpoint."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on robots and GPU boxes
    from matplotlib import pyplot

    rows = [(f"{r.path}: {name}", span, STREAM_COLORS.get(name, "tab:purple"))
            for r in (turn, reference) if r is not None for name, span in r.timeline.items()]
    figure, axes = pyplot.subplots(figsize=(9, 1 + 0.45 * max(len(rows), 1)))
    for index, (label, (first, last), color) in enumerate(rows):
        width = max(last - first, 0.004)  # a single message still shows as a tick
        axes.barh(index, width, left=first, color=color, height=0.6)
        axes.text(last + 0.01, index, f"{first * 1e3:.0f} .. {last * 1e3:.0f} ms",
                  va="center", fontsize=7)
    axes.set_yticks(range(len(rows)), [label for label, _, _ in rows], fontsize=8)
    axes.invert_yaxis()
    axes.axvline(0.0, color="black", linewidth=1)
    axes.set_xlabel("seconds after the endpoint (end of user speech detected)")
    title = "no turn measured" if turn is None else f"turn {turn.turn}: first and last message"
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
