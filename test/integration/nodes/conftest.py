"""A private user-space PulseAudio server with two null sinks, for the sound-card node tests.

mic_sink: tests play into it and nodes record its monitor (a fake microphone);
spk_sink: nodes play into it and tests record its monitor (a fake speaker).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rclpy
import soundfile
from rosgraph_msgs.msg import Clock

from stream_omni_ros.nodes.discovery import DiscoveryProbe


@dataclass(frozen=True)
class PulseServer:
    """Environment that points PulseAudio clients (pyaudio's `pulse` device, paplay) at it."""

    env: dict[str, str]

    def client_env(self, **extra: str) -> dict[str, str]:
        """os.environ plus this server, plus e.g. PULSE_SOURCE / PULSE_SINK."""
        return {**os.environ, **self.env, **extra}

    def play(self, wav: Path, sink: str) -> subprocess.Popen:
        """Play a WAV file into a sink with paplay."""
        return subprocess.Popen(["paplay", f"--device={sink}", str(wav)],
                                env=self.client_env())

    def record(self, source: str, path: Path, rate: int = 16000) -> Recording:
        """Start recording mono S16LE from a source into a raw file."""
        with open(path, "wb") as out:
            proc = subprocess.Popen(["parec", f"--device={source}", "--format=s16le",
                                     f"--rate={rate}", "--channels=1", "--raw",
                                     "--latency-msec=20"], stdout=out, env=self.client_env())
        return Recording(proc, path, rate)


@dataclass(frozen=True)
class Recording:
    """A running parec; its file grows while it records (a monitor only while audio plays)."""

    proc: subprocess.Popen
    path: Path
    rate: int

    def samples(self) -> np.ndarray:
        """What was recorded so far, as float32."""
        data = self.path.read_bytes()
        return np.frombuffer(data[:len(data) // 2 * 2], dtype="<i2").astype(np.float32) / 32768

    def loud_seconds(self) -> float:
        """Seconds of loud audio recorded so far."""
        return loud_seconds(self.samples(), self.rate)

    def stop(self) -> np.ndarray:
        """Stop recording and return everything recorded."""
        self.proc.terminate()
        self.proc.wait(timeout=10)
        return self.samples()


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    """Start pulseaudio with its own XDG_RUNTIME_DIR; stop it after the module's tests."""
    if shutil.which("pulseaudio") is None:
        pytest.skip("pulseaudio is not installed (scripts/setup.sh installs it)")
    runtime = tmp_path_factory.mktemp("pulse")
    env = {"XDG_RUNTIME_DIR": str(runtime), "HOME": str(runtime),
           "PULSE_SERVER": f"unix:{runtime}/pulse/native"}
    full_env = {**os.environ, **env}
    subprocess.run(["pulseaudio", "-n", "--daemonize=true", "--exit-idle-time=-1",
                    "--load=module-null-sink sink_name=mic_sink",
                    "--load=module-null-sink sink_name=spk_sink",
                    "--load=module-native-protocol-unix auth-anonymous=1"],
                   env=full_env, check=True, timeout=30, capture_output=True)
    deadline = time.monotonic() + 60
    while subprocess.run(["pactl", "info"], env=full_env, capture_output=True).returncode:
        assert time.monotonic() < deadline, "pulseaudio did not come up"
        time.sleep(0.1)
    yield PulseServer(env)
    subprocess.run(["pactl", "exit"], env=full_env, capture_output=True, timeout=10)


@pytest.fixture
def ros_node():
    """A plain rclpy node in the test process (the node under test runs in another one)."""
    rclpy.init()
    node = rclpy.create_node("sound_test")
    yield node
    node.destroy_node()
    rclpy.try_shutdown()


def spin_until(node, predicate, timeout_s: float) -> bool:
    """Spin `node` until `predicate()` holds or the timeout passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not predicate():
        rclpy.spin_once(node, timeout_sec=0.02)
    return bool(predicate())


def spin_until_discovered(node, server: str, timeout_s: float) -> bool:
    """Spin `node` until node `server` has discovered its endpoints (architecture.md 5.1)."""
    probe = DiscoveryProbe(node, server)
    try:
        return spin_until(node, probe.answered, timeout_s)
    finally:
        probe.close()


def publish_clock(publisher, seconds: float) -> None:
    """Publish one /clock message (as Gazebo would)."""
    msg = Clock()
    msg.clock.sec, msg.clock.nanosec = int(seconds), int(seconds % 1 * 1e9)
    publisher.publish(msg)


def wait_for_file(path: Path, process: subprocess.Popen, node, timeout_s: float) -> bool:
    """Spin the test node until `path` exists (False if the process died or time ran out)."""
    return spin_until(node, lambda: path.exists() or process.poll() is not None,
                      timeout_s) and path.exists()


def spin_for(node, seconds: float) -> None:
    """Spin `node` for a while."""
    spin_until(node, lambda: False, seconds)


def tone(freq_hz: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    """A float32 sine."""
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def write_tone(path: Path, freq_hz: float, seconds: float, rate: int = 16000) -> Path:
    """A 16-bit mono WAV of a sine."""
    soundfile.write(path, tone(freq_hz, seconds, rate), rate, subtype="PCM_16")
    return path


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    """Frequency of the strongest spectral peak."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def loud_frames(samples: np.ndarray, rate: int, threshold: float = 0.05) -> np.ndarray:
    """Per 20 ms frame: whether its RMS exceeds `threshold`."""
    frame = rate // 50
    usable = samples[:len(samples) // frame * frame].reshape(-1, frame)  # [frames, 20 ms]
    return np.sqrt((usable ** 2).mean(axis=1)) > threshold


def tone_hz(samples: np.ndarray, rate: int) -> float:
    """Pitch of a tone from the spacing of zero crossings, voted over its loud 20 ms frames.

    A starved real-time sound server drops, repeats or garbles a few periods; each loud frame
    votes with its own crossing spacing and frames far from the majority are left out, so the
    estimate stays within a few Hz while most of the tone is intact.
    """
    frame = rate // 50
    usable = samples[:len(samples) // frame * frame].reshape(-1, frame)
    spacings = [np.diff(np.flatnonzero(np.diff(np.signbit(part))))
                for part in usable[loud_frames(samples, rate)]]
    spacings = [spacing for spacing in spacings if spacing.size]
    assert spacings, "no tone was recorded"
    majority = np.median([np.median(spacing) for spacing in spacings])
    kept = np.concatenate([spacing for spacing in spacings
                           if abs(np.median(spacing) / majority - 1) < 0.2])
    typical = kept[(kept > 0.5 * majority) & (kept < 1.5 * majority)]
    return float(rate / (2 * typical.mean()))


def loud_seconds(samples: np.ndarray, rate: int, threshold: float = 0.05) -> float:
    """Total duration of 20 ms frames whose RMS exceeds `threshold`."""
    return float(loud_frames(samples, rate, threshold).sum() * 0.02)


def loud_part(samples: np.ndarray, rate: int) -> np.ndarray:
    """The contiguous stretch from the first to the last loud 20 ms frame."""
    loud = np.flatnonzero(loud_frames(samples, rate))
    assert loud.size, "nothing loud was recorded"
    frame = rate // 50
    return samples[loud[0] * frame:(loud[-1] + 1) * frame]




@pytest.fixture
def sound():
    """This module's helpers (tone, dominant_hz, ...): test files cannot import a conftest."""
    return sys.modules[__name__]
