"""audio_common_bridge between audio_common / REP-155 messages and omni_node (echo responder).

The robot side (capture, audio_play and HRI listeners) is audio_common_peer.py in its own
process, with the test stand-ins of audio_common_msgs and hri_msgs that
scripts/build_test_interfaces.sh builds; the test process and omni_node never load them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soxr
from diagnostic_msgs.msg import DiagnosticArray

from stream_omni_ros.msg import AudioChunk, NodeState, ResponseText, Transcript
from stream_omni_ros.nodes.audio_common_conversions import float_to_wave_bytes
from stream_omni_ros.nodes.audio_conversions import audio_msg_to_pcm, pcm_to_audio_msg
from stream_omni_ros.nodes.executables import start_node, stop_node

ROOT = Path(__file__).resolve().parents[3]
PEER = ROOT / "test" / "integration" / "audio_common_peer.py"
VOICE_TOPIC = "/humans/voices/default/speech"
BRIDGE_DIAGNOSTIC = "stream_omni: audio_common_bridge"
PATH_VARIABLES = ("AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH", "PYTHONPATH", "LD_LIBRARY_PATH")


def without_test_interfaces(env: dict[str, str]) -> dict[str, str]:
    """The environment with the test interface packages taken off every search path."""
    marker = os.sep + os.path.join("build", "test_interfaces") + os.sep
    return {key: (os.pathsep.join(p for p in value.split(os.pathsep) if marker not in p + os.sep)
                  if key in PATH_VARIABLES else value) for key, value in env.items()}


@pytest.fixture(scope="module")
def interfaces_env() -> dict[str, str]:
    """os.environ plus the test interface packages (built with colcon when out of date)."""
    build = subprocess.run(["bash", str(ROOT / "scripts" / "build_test_interfaces.sh")],
                           capture_output=True, text=True, check=False)
    assert build.returncode == 0, build.stderr
    prefix = build.stdout.strip().splitlines()[-1]
    dump = subprocess.run(["bash", "-c", f'. "{prefix}/setup.bash" && env -0'],
                          capture_output=True, check=True, env=os.environ)
    return dict(item.split("=", 1) for item in dump.stdout.decode().split("\0") if "=" in item)


class Process:
    """A node or peer process; its output is kept line by line."""

    def __init__(self, argv_or_node: list[str] | str, env: dict[str, str], log: Path,
                 params: dict[str, object] | None = None) -> None:
        self.log_path, self.lines = log, []
        kwargs = {"env": env, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT,
                  "stdin": subprocess.PIPE, "text": True}
        if isinstance(argv_or_node, str):
            self.process = start_node(argv_or_node, params, **kwargs)
        else:
            self.process = subprocess.Popen([sys.executable, str(PEER), *argv_or_node],
                                            **kwargs)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def log(self) -> str:
        """Everything printed so far."""
        return "\n".join(self.lines)

    def json_lines(self, topic: str) -> list[dict]:
        """The peer's JSON reports of one topic."""
        return [r for r in (json.loads(x) for x in list(self.lines) if x.startswith("{"))
                if r["topic"] == topic]

    def next_file(self) -> None:
        """Tell a capture peer to play its next file."""
        self.process.stdin.write("\n")
        self.process.stdin.flush()

    def stop(self) -> int:
        """SIGINT; returns the exit status."""
        status = stop_node(self.process)
        self._reader.join(timeout=5)
        return status


@pytest.fixture
def processes(tmp_path):
    """start(argv or node name, env, **params) -> Process; all stopped after the test."""
    started: list[Process] = []

    def start(what, env, **params) -> Process:
        proc = Process(what, env, tmp_path / f"proc_{len(started)}.log", params)
        started.append(proc)
        return proc
    yield start
    for proc in started:
        proc.stop()
        print(f"---- {proc.process.args[:3]} ----\n{proc.log()}")  # shown when a test fails


def diagnostic_values(arrays: list) -> dict[str, str]:
    """The bridge's latest /diagnostics key/values."""
    for array in reversed(arrays):
        for status in array.status:
            if status.name == BRIDGE_DIAGNOSTIC:
                return {kv.key: kv.value for kv in status.values}
    return {}


def save(tmp_path: Path, name: str, samples: np.ndarray) -> str:
    """Write float32 [frames, channels] for the capture peer."""
    path = tmp_path / f"{name}.npy"
    np.save(path, samples.astype(np.float32))
    return str(path)


def is_subsequence(items: list, sequence: list) -> bool:
    """True if `items` appear in `sequence` in the same order."""
    remaining = iter(sequence)
    return all(item in remaining for item in items)


def mirror_of(chunks: list) -> bytes:
    """audio/out chunks as the mirror should carry them (S16LE mono at the same rate)."""
    return b"".join(float_to_wave_bytes(audio_msg_to_pcm(c).samples.mean(axis=1), "S16LE")
                    for c in chunks)


def mirrored_bytes(listener: Process) -> int:
    """Bytes of AudioData the listener received."""
    return sum(r["bytes"] for r in listener.json_lines("audio"))


def send_until_mirrored(publisher, chunk, listener: Process) -> None:
    """Publish a one-chunk turn until the listener gets it: the bridge's writer has matched it
    (a volatile writer drops what it sends before it discovers a reader)."""
    for _ in range(600):
        publisher.publish(chunk)
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:
            if listener.json_lines("audio"):
                return
            time.sleep(0.01)
    raise AssertionError("the bridge's mirror never reached the listener")


def spoken_turn_done(out: dict, turns: int):
    """True once `turns` responses and their final audio/out chunks have arrived."""
    return lambda: (len(out["response/final"]) >= turns
                    and sum(c.is_final for c in out["audio/out"]) >= turns)


def listens_after_speaking(states: list) -> bool:
    """True once a `listening` state follows the latest `speaking` one."""
    labels = [s.label for s in states]
    return "speaking" in labels and "listening" in labels[len(labels) - labels[::-1].index(
        "speaking"):]


def test_capture_audio_drives_turns_and_the_answer_reaches_audio_play_and_live_speech(
        peer, speak, helpers, processes, interfaces_env, tmp_path):
    out = {topic: peer.collect(kind, topic) for topic, kind in (
        ("asr/partial", Transcript), ("asr/final", Transcript),
        ("response/final", ResponseText), ("audio/out", AudioChunk))}
    states = peer.collect(NodeState, "state", helpers.LATCHED)
    omni = processes("omni_node", os.environ, responder="echo")
    processes("audio_common_bridge", interfaces_env, **{"play.sample_rate": 22050})
    mirror_file = tmp_path / "mirror.raw"
    listener = processes(["listen", VOICE_TOPIC, str(mirror_file)], interfaces_env)
    helpers.wait_until(lambda: any(s.label == "listening" for s in states),
                       what=f"omni_node to listen:\n{omni.log()}")
    speech = speak("Hello robot, please bring me the red cup.")
    stereo_48k = np.repeat(soxr.resample(speech, 16000, 48000)[:, None], 2, axis=1)
    mono_44k = soxr.resample(speech, 16000, 44100)[:, None]
    capture = processes(["capture", save(tmp_path, "s16", stereo_48k), "48000", "S16LE", "wave",
                         save(tmp_path, "f32", mono_44k), "44100", "F32LE", "wave"],
                        interfaces_env)
    helpers.wait_until(spoken_turn_done(out, 1), what="the answer to S16LE 48 kHz stereo")
    # the mirror plays at real-time pace: speaking again before it ends would be a barge-in
    helpers.wait_until(lambda: mirrored_bytes(listener) >= len(mirror_of(out["audio/out"])),
                       what="the first answer on the mirror")
    # without an audio/played reference omni_node ignores speech while it still counts its own
    # answer as playing (echo.without_reference: no_barge_in): speak once it listens again
    helpers.wait_until(lambda: listens_after_speaking(states), what="omni_node to listen again")
    capture.next_file()
    helpers.wait_until(spoken_turn_done(out, 2), what="the answer to F32LE 44.1 kHz mono")

    finals = out["asr/final"]
    assert len(finals) == 2 and len({m.turn_id for m in finals}) == 2
    assert all(r.text.startswith(f"You said: {m.text}")
               for r, m in zip(out["response/final"], finals, strict=True))
    # audio/out mirrored for audio_play: the same samples as S16LE mono at 22050 Hz
    expected = mirror_of(out["audio/out"])
    helpers.wait_until(lambda: mirrored_bytes(listener) >= len(expected),
                       what="the mirrored audio")
    assert mirror_file.read_bytes() == expected
    assert listener.json_lines("info")[-1] == {"topic": "info", "channels": 1, "rate": 22050,
                                               "format": "S16LE", "coding": "wave"}
    # LiveSpeech: the partial transcripts as incremental results, then the final one, per turn
    helpers.wait_until(lambda: sum(bool(r["final"]) for r in listener.json_lines("speech")) == 2,
                       what="two final LiveSpeech messages")
    speech_msgs = listener.json_lines("speech")
    heard = [(m.text, m.is_final) for m in sorted(out["asr/partial"] + finals,
                                                  key=lambda m: (m.turn_id, m.seq))]
    said = [(r["final"] or r["incremental"], bool(r["final"])) for r in speech_msgs]
    assert is_subsequence(said, heard) and [s for s in said if s[1]] == [
        (m.text, True) for m in finals], (said, heard)
    assert any(not r["final"] for r in speech_msgs), "no incremental LiveSpeech"
    assert all(r["language"] == "en-US" for r in speech_msgs)
    assert [r["confidence"] for r in speech_msgs if r["final"]] == [1.0, 1.0]


def test_mp3_capture_is_refused_naming_format_wave_and_the_bridge_keeps_serving(
        peer, helpers, processes, interfaces_env, tmp_path):
    audio_in = peer.collect(AudioChunk, "audio/in")
    diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
    bridge = processes("audio_common_bridge", interfaces_env, **{"capture.header_stamps": True})
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, (16000, 1)).astype(np.float32)
    chunks_per_file = 50  # 20 ms chunks of 1 s
    capture = processes(["capture", save(tmp_path, "a", noise), "16000", "S16LE", "mp3",
                         save(tmp_path, "b", noise), "16000", "S16LE", "wave"], interfaces_env)
    helpers.wait_until(lambda: any(line.startswith("sent") for line in capture.lines),
                       what="the mp3 stream")
    helpers.wait_until(lambda: "format:=wave" in bridge.log(),
                       what=f"the refusal naming format:=wave:\n{bridge.log()}")
    refusals = [line for line in bridge.lines if "format:=wave" in line]
    assert len(refusals) == 1 and "'mp3'" in refusals[0], refusals  # logged once, not per chunk
    capture.next_file()

    def counts() -> tuple[int, int]:
        values = diagnostic_values(diagnostics)
        return (sum(int(v) for k, v in values.items() if k.startswith("capture.dropped.")),
                int(values.get("capture.forwarded", 0)))
    # every chunk is accounted for: refused while the info said mp3, forwarded once it says wave
    helpers.wait_until(lambda: sum(counts()) == 2 * chunks_per_file and counts()[1],
                       what="all chunks counted in /diagnostics")
    assert int(diagnostic_values(diagnostics)["capture.dropped.coding_format"]) > 0
    refused, forwarded = counts()
    # AudioInfo and audio are separate topics: the switch to wave may overtake the last mp3
    # chunks, so some of those pass; every chunk is still refused or forwarded exactly once
    assert refused > 0 and len(audio_in) == forwarded
    sent = float_to_wave_bytes(noise, "S16LE")
    assert all(c.sample_rate == 16000 and c.channels == 1 and c.encoding == "S16LE"
               and c.header.frame_id == "mic_link" for c in audio_in)
    assert sent.endswith(b"".join(bytes(c.data) for c in audio_in))
    assert [c.seq for c in audio_in] == list(range(forwarded))
    stamps = [c.header.stamp.sec * 10**9 + c.header.stamp.nanosec for c in audio_in]
    assert set(np.diff(stamps)) <= {20_000_000}  # the capture's own stamps, 20 ms apart
    assert bridge.process.poll() is None


def test_without_the_interface_packages_the_bridge_says_so_once_and_runs(
        peer, helpers, processes):
    diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
    bridge = processes("audio_common_bridge", without_test_interfaces(dict(os.environ)))
    helpers.wait_until(lambda: diagnostic_values(diagnostics),
                       what=f"the bridge's diagnostics:\n{bridge.log()}")
    values = diagnostic_values(diagnostics)
    assert values["part.capture"] == values["part.play"] == "off (no audio_common_msgs)"
    assert values["part.live_speech"] == "off (no hri_msgs)"
    for package in ("audio_common_msgs", "hri_msgs"):
        said = [line for line in bridge.lines if f"{package} is not installed" in line]
        assert len(said) == 1, bridge.log()
    assert bridge.stop() == 0


def test_the_audio_play_mirror_is_paced_and_drops_the_answer_on_barge_in(
        peer, helpers, processes, interfaces_env, tmp_path):
    # audio_play cannot drop what it queued: the bridge keeps the answer until it is due
    rate, seconds = 8000, 30
    answer = np.random.default_rng(1).uniform(-0.5, 0.5, rate * seconds).astype(np.float32)
    audio_out = peer.node.create_publisher(AudioChunk, "audio/out", helpers.RELIABLE)
    state = peer.node.create_publisher(NodeState, "state", helpers.LATCHED)
    diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
    processes("audio_common_bridge", interfaces_env, **{"play.sample_rate": rate})
    mirror_file = tmp_path / "mirror.raw"
    listener = processes(["listen", VOICE_TOPIC, str(mirror_file)], interfaces_env)
    helpers.wait_until(lambda: "ready" in listener.lines and audio_out.get_subscription_count()
                       and state.get_subscription_count(), what="the bridge and the listener")
    step = rate // 2  # 60 chunks: fewer than the reliable queues hold, so none is lost
    warm_up = np.full(step, 0.1, np.float32)
    send_until_mirrored(audio_out, pcm_to_audio_msg(warm_up, rate, turn_id=1, is_final=True,
                                                    encoding="S16LE"), listener)
    for seq, first in enumerate(range(0, len(answer), step)):
        audio_out.publish(pcm_to_audio_msg(answer[first:first + step], rate, turn_id=2,
                                           seq=seq, encoding="S16LE"))
    warm_bytes = float_to_wave_bytes(warm_up, "S16LE")

    def after_warm_up() -> bytes:
        mirrored = mirror_file.read_bytes()
        while mirrored.startswith(warm_bytes):
            mirrored = mirrored[len(warm_bytes):]
        return mirrored
    helpers.wait_until(lambda: len(after_warm_up()) >= len(warm_bytes),
                       what="the answer to start")
    state.publish(NodeState(state=NodeState.USER_SPEAKING, label="user_speaking", turn_id=2))
    helpers.wait_until(lambda: int(diagnostic_values(diagnostics).get(
        "play.barge_in_flushes", 0)) == 1, what="the barge-in flush")
    # chunks of the interrupted turn still arriving are dropped; the next turn plays
    audio_out.publish(pcm_to_audio_msg(answer[:step], rate, turn_id=2, seq=9999,
                                       encoding="S16LE"))
    beep = np.full(step, 0.25, np.float32)  # unlike any part of the answer
    audio_out.publish(pcm_to_audio_msg(beep, rate, turn_id=3, seq=0, is_final=True,
                                       encoding="S16LE"))
    next_turn = float_to_wave_bytes(beep, "S16LE")
    helpers.wait_until(lambda: mirror_file.read_bytes().endswith(next_turn),
                       what="the next turn's audio")
    played = after_warm_up()[:-len(next_turn)]
    full = float_to_wave_bytes(answer, "S16LE")
    assert full.startswith(played) and 0 < len(played) < len(full) // 2
