"""audio_sink_node: writes `audio/out` to one WAV file per turn, with per-turn timing.

The Gazebo/CI counterpart of a speaker: the files and `<output_dir>/turns.jsonl` show what the
assistant said and when each turn's audio arrived (node clock, so sim time works).
"""
from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from stream_omni_ros.errors import InputError
from stream_omni_ros.msg import AudioChunk
from stream_omni_ros.nodes.audio_conversions import audio_msg_to_pcm
from stream_omni_ros.nodes.node_process import exit_process, spin_node

MAX_IDLE_CLOSED = 64  # turns closed while idle that are remembered for a late continuation


@dataclass
class TurnRecording:
    """Audio received for one turn and when it arrived (node-clock seconds)."""

    turn_id: int
    sample_rate: int
    first_arrival_s: float
    last_arrival_s: float = 0.0
    chunks: int = 0
    lost_chunks: int = 0
    next_seq: int = 0
    parts: list[np.ndarray] = field(default_factory=list)

    def add(self, samples: np.ndarray, seq: int, arrival_s: float) -> None:
        """Append one chunk, counting chunks lost before it."""
        self.lost_chunks += max(0, seq - self.next_seq)
        self.next_seq = seq + 1
        self.parts.append(samples)
        self.chunks += 1
        self.last_arrival_s = arrival_s

    def summary(self, path: Path) -> dict:
        """Timing and size of this turn as a JSON-able dict."""
        frames = sum(p.shape[0] for p in self.parts)
        return {"turn_id": self.turn_id, "file": path.name, "sample_rate": self.sample_rate,
                "audio_s": frames / self.sample_rate, "chunks": self.chunks,
                "lost_chunks": self.lost_chunks, "first_arrival_s": self.first_arrival_s,
                "last_arrival_s": self.last_arrival_s}


class AudioSinkNode(Node):
    """Collects AudioChunks per turn and writes each finished turn as a WAV file."""

    def __init__(self) -> None:
        super().__init__("audio_sink")
        self.output_dir = Path(self.declare_parameter("output_dir", "audio_out").value)
        self.idle_timeout_s = float(self.declare_parameter("idle_timeout_s", 2.0).value)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.turns: dict[int, TurnRecording] = {}
        # next seq of turns closed while idle, so a late continuation counts no false losses
        self.closed_idle: collections.OrderedDict[int, int] = collections.OrderedDict()
        self.rejected = 0
        self.written: list[Path] = []
        qos = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(AudioChunk, "audio/out", self._on_chunk, qos)
        self.create_timer(0.1, self._close_idle_turns)

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_chunk(self, msg: AudioChunk) -> None:
        try:
            pcm = audio_msg_to_pcm(msg)
        except InputError as err:
            self.rejected += 1
            self.get_logger().warning(f"dropped AudioChunk: {err}")
            return
        turn = self.turns.get(msg.turn_id)
        if turn is not None and turn.sample_rate != pcm.sample_rate:
            self._write(self.turns.pop(msg.turn_id))
            turn = None
        if turn is None:
            turn = self.turns[msg.turn_id] = TurnRecording(msg.turn_id, pcm.sample_rate,
                                                           self._now_s())
            resumed = self.closed_idle.pop(msg.turn_id, None)
            if resumed is not None:
                turn.next_seq = resumed
                self.get_logger().warning(
                    f"turn {msg.turn_id} continues after {self.idle_timeout_s} s without audio: "
                    f"its next part goes to a new file (raise idle_timeout_s to keep one)")
        turn.add(pcm.samples, msg.seq, self._now_s())
        if msg.is_final:
            self._write(self.turns.pop(msg.turn_id))

    def _close_idle_turns(self) -> None:
        now = self._now_s()
        for turn_id in [t for t, rec in self.turns.items()
                        if now - rec.last_arrival_s > self.idle_timeout_s]:
            turn = self.turns.pop(turn_id)
            self.closed_idle[turn_id] = turn.next_seq
            while len(self.closed_idle) > MAX_IDLE_CLOSED:
                self.closed_idle.popitem(last=False)
            self._write(turn)

    def _write(self, turn: TurnRecording) -> None:
        path = self.output_dir / f"turn_{turn.turn_id:04d}_{len(self.written):03d}.wav"
        samples = np.concatenate(turn.parts) if turn.parts else np.zeros((0, 1), np.float32)
        soundfile.write(path, samples, turn.sample_rate, subtype="PCM_16")
        summary = turn.summary(path)
        with open(self.output_dir / "turns.jsonl", "a", encoding="utf-8") as log_file:
            log_file.write(json.dumps(summary) + "\n")
        self.written.append(path)
        self.get_logger().info(f"wrote {path} ({summary['audio_s']:.2f} s, "
                               f"{turn.chunks} chunks, {turn.lost_chunks} lost)")

    def flush(self) -> None:
        """Write every turn still open."""
        for turn_id in list(self.turns):
            self._write(self.turns.pop(turn_id))

    def finish(self) -> None:
        """Process exit: open turns are written (the clock may have stopped: no timer waits)."""
        self.flush()


def main(args: list[str] | None = None) -> None:
    """Run the sink until SIGINT/SIGTERM; open turns are written on the way out."""
    exit_process(spin_node(AudioSinkNode, args))
