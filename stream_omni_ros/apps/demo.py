"""demo: ask the robot a spoken question about a camera image and check every answer part.

`bringup` runs omni_node, wav_source_node and audio_sink_node in one child process; this process
publishes a drawn table scene on `image`, prints the transcript and the response while they
stream (seconds relative to the end of the spoken question), and at the end verifies what it
claims: a final transcript, a final response, and an answer WAV with the vocoder's sample rate
and a non-zero duration. Without --model-path/--cosyvoice-path it runs tiny random weights.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import rclpy
import soundfile
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image

from stream_omni_ros.engine.events import STATE_LISTENING
from stream_omni_ros.errors import ConfigError
from stream_omni_ros.msg import AudioChunk, NodeState, ResponseText, Transcript
from stream_omni_ros.apps.bringup import OMNI, default_params_file, node_params_to_yaml
from stream_omni_ros.nodes.conversions import rgb_to_image_msg
from stream_omni_ros.apps.demo_checks import (ACCEPTED_STOP_REASONS, Arrivals, answer_wav,
                                               check_arrivals, report)
from stream_omni_ros.apps.loopback_check import speak_to_wav
from stream_omni_ros.nodes.omni_publishers import AUDIO_OUT_QOS, RELIABLE_10, STATE_QOS
from stream_omni_ros.nodes.stamps import time_msg_to_seconds

DEMO_EXECUTABLES = "omni_node,wav_source_node,audio_sink_node"
WAV_CHUNK_S = 0.02
TINY_BANNER = """\
======================================================================================
 TINY RANDOM WEIGHTS: no Stream-Omni checkpoint was given, so this demo runs a tiny
 untrained model. Its transcript, its words and its voice are MEANINGLESS noise; the
 demo only shows that every part runs and streams. For real answers pass
 --model-path <stream-omni-8b folder> --cosyvoice-path <CosyVoice-300M-25Hz folder>.
======================================================================================"""
# An untrained model rarely stops on its own: bound the tiny answer to 6 s of speech and about
# as much text as the CTC head's triggers produce in that time.
TINY_GENERATION = {"generation.max_new_tokens": 80, "generation.max_new_units": 150}


@dataclass(frozen=True)
class DemoConfig:
    """What to ask, where to write, which weights, and how long to wait."""

    question: str = "Hello robot. What do you see on the table in front of you?"
    out_dir: Path = Path("demo_out")
    model_path: str = ""  # empty (with cosyvoice_path empty): tiny random weights
    cosyvoice_path: str = ""
    device: str = "auto"  # auto: cuda when torch sees a GPU, else cpu
    dtype: str = "auto"  # auto: bf16 on cuda, fp32 on cpu
    params_file: Path | None = None  # default: the package's config/stream_omni.yaml
    load_timeout_s: float = 600.0
    answer_timeout_s: float = 300.0
    image_rate_hz: float = 5.0

    def __post_init__(self) -> None:
        if bool(self.model_path) != bool(self.cosyvoice_path):
            raise ConfigError("demo: --model-path and --cosyvoice-path go together; got only "
                              f"{'--model-path' if self.model_path else '--cosyvoice-path'}")
        for name in ("load_timeout_s", "answer_timeout_s", "image_rate_hz"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"demo: {name} = {getattr(self, name)}; expected > 0")


def draw_table_scene(width: int = 640, height: int = 480) -> np.ndarray:
    """A simple camera view as RGB uint8 [height, width, 3]: a wooden table with a red cup."""
    bgr = np.zeros((height, width, 3), np.uint8)
    bgr[:] = (200, 215, 225)  # light wall
    bgr[int(height * 0.55):] = (90, 110, 130)  # floor
    top = np.array([[0.18, 0.52], [0.82, 0.52], [0.95, 0.72], [0.05, 0.72]]) * (width, height)
    cv2.fillConvexPoly(bgr, top.astype(np.int32), (40, 90, 150))  # table top (brown)
    for x in (0.08, 0.88):
        cv2.rectangle(bgr, (int(x * width), int(0.72 * height)),
                      (int((x + 0.04) * width), int(0.97 * height)), (30, 60, 100), -1)
    cx, cup_top, cup_bottom, half = width // 2, int(0.38 * height), int(0.62 * height), 36
    cv2.rectangle(bgr, (cx - half, cup_top), (cx + half, cup_bottom), (30, 30, 210), -1)
    cv2.ellipse(bgr, (cx, cup_bottom), (half, 10), 0, 0, 180, (30, 30, 210), -1)
    cv2.ellipse(bgr, (cx, cup_top), (half, 10), 0, 0, 360, (20, 20, 140), -1)
    cv2.ellipse(bgr, (cx + half, (cup_top + cup_bottom) // 2), (22, 30), 0, -90, 90,
                (30, 30, 210), 8)  # handle
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class DemoObserver(Node):
    """Publishes the scene, prints the streamed answer and records what arrived."""

    def __init__(self, scene_rgb: np.ndarray, image_rate_hz: float, question_s: float) -> None:
        super().__init__("stream_omni_demo")
        self.scene_rgb, self.question_s = scene_rgb, question_s
        self.arrivals = Arrivals()
        self.state = NodeState()
        self.question_end_s: float | None = None
        self._image_pub = self.create_publisher(Image, "image", qos_profile_sensor_data)
        self.create_timer(1.0 / image_rate_hz, self._publish_image)
        self.create_subscription(NodeState, "state", self._on_state, STATE_QOS)
        for topic in ("asr/partial", "asr/final"):
            self.create_subscription(Transcript, topic, self._on_transcript, RELIABLE_10)
        for topic in ("response/partial", "response/final"):
            self.create_subscription(ResponseText, topic, self._on_response, RELIABLE_10)
        self.create_subscription(AudioChunk, "audio/out", self._on_speech, AUDIO_OUT_QOS)
        self._question_sub = None

    def listen_to_question(self) -> None:
        """Follow audio/in (only once omni_node listens: wav_source starts on a subscriber)."""
        if self._question_sub is None:
            best_effort = QoSProfile(depth=400, reliability=ReliabilityPolicy.BEST_EFFORT)
            self._question_sub = self.create_subscription(AudioChunk, "audio/in",
                                                          self._on_question, best_effort)

    def saw_listening(self) -> bool:
        """True once omni_node has reported that it listens (model loaded, node active)."""
        return self._question_sub is not None

    def now_s(self) -> float:
        """Node-clock seconds."""
        return self.get_clock().now().nanoseconds * 1e-9

    def _say(self, what: str) -> None:
        if self.question_end_s is None:
            print(f"[   ?    ] {what}", flush=True)
        else:
            print(f"[{self.now_s() - self.question_end_s:+7.2f}s] {what}", flush=True)

    def _publish_image(self) -> None:
        self._image_pub.publish(rgb_to_image_msg(self.scene_rgb, stamp=self.get_clock().now()
                                                 .to_msg(), frame_id="camera"))

    def _on_state(self, msg: NodeState) -> None:
        self.state = msg
        self._say(f"omni_node state: {msg.label}" + (f" ({msg.detail})" if msg.detail else ""))

    def _on_question(self, msg: AudioChunk) -> None:
        if self.question_end_s is None:
            # Chunks have a fixed length, so any chunk's stamp and seq give the stream's start.
            step = round(WAV_CHUNK_S * msg.sample_rate) / msg.sample_rate
            start = time_msg_to_seconds(msg.header.stamp) - msg.seq * step
            self.question_end_s = start + self.question_s

    def _on_transcript(self, msg: Transcript) -> None:
        kind = "final" if msg.is_final else "partial"
        self._say(f"heard ({kind}, turn {msg.turn_id}): {msg.text!r}")
        if msg.is_final and self.arrivals.transcript is None:
            self.arrivals.transcript = msg

    def _on_response(self, msg: ResponseText) -> None:
        if msg.is_final:
            self._say(f"response final (turn {msg.turn_id}, stop: {msg.stop_reason}, image used: "
                      f"{msg.used_image}): {msg.text!r}")
            self.arrivals.response = self.arrivals.response or msg
        else:
            self._say(f"response delta: {msg.delta!r}")

    def _on_speech(self, msg: AudioChunk) -> None:
        if self.arrivals.speech_chunks == 0:
            self._say(f"speech: first audio chunk ({msg.sample_rate} Hz)")
        self.arrivals.speech_chunks += 1


def resolve_device(device: str, dtype: str) -> tuple[str, str]:
    """'auto' -> cuda if torch sees a GPU else cpu; dtype 'auto' -> bf16 on cuda, fp32 on cpu."""
    if device == "auto":
        import torch  # only to look for a GPU; the model runs in the bringup process

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bf16" if device.startswith("cuda") else "fp32"
    return device, dtype


def prepare_outputs(config: DemoConfig) -> tuple[dict[str, object], bool]:
    """Clear old answers, make the question WAV and scene; omni_node parameters and tiny flag."""
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob("turn_*.wav"), out / "turns.jsonl"]:
        stale.unlink(missing_ok=True)
    model_path, cosyvoice_path, tiny = config.model_path, config.cosyvoice_path, False
    if not model_path:
        from stream_omni_ros.tiny_assets import ensure_tiny_assets

        assets, tiny = ensure_tiny_assets(kind="demo"), True
        model_path, cosyvoice_path = str(assets.model_path), str(assets.cosyvoice_path)
        print(f"tiny assets: {assets.root} ({'reused' if assets.reused else 'written'})")
    device, dtype = resolve_device(config.device, config.dtype)
    omni = {"model.path": model_path, "cosyvoice.path": cosyvoice_path, "device": device,
            "dtype": dtype, **(TINY_GENERATION if tiny else {})}
    return omni, tiny


def start_bringup(config: DemoConfig, omni_params: dict[str, object],
                  question_wav: Path) -> subprocess.Popen:
    """Start the demo's nodes in one child process; its log goes to <out>/bringup.log."""
    node_params = {
        OMNI: omni_params,
        "wav_source": {"files": [str(question_wav.resolve())], "chunk_s": WAV_CHUNK_S,
                       "gap_s": 1.5},
        # An answer ends with its final chunk; a slow CPU may pause longer than any short idle
        # limit between chunks, and the demo waits answer_timeout_s for the answer anyway.
        "audio_sink": {"output_dir": str(config.out_dir.resolve()),
                       "idle_timeout_s": config.answer_timeout_s}}
    overrides = config.out_dir / "demo_params.yaml"
    overrides.write_text(node_params_to_yaml(node_params), encoding="utf-8")
    base = config.params_file or default_params_file()
    command = [sys.executable, "-m", "stream_omni_ros.apps.bringup", "--nodes",
               DEMO_EXECUTABLES, "--params-file", str(base), "--params-file", str(overrides)]
    with open(config.out_dir / "bringup.log", "wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def waiting_problem(observer: DemoObserver, config: DemoConfig, waited_s: float) -> str | None:
    """None while the turn is still going; '' once it is complete; else why to stop waiting."""
    arrivals, state = observer.arrivals, observer.state
    if "configure failed" in state.detail:
        return f"omni_node could not load the model: {state.detail}"
    response = arrivals.response
    if response is not None and response.stop_reason not in ACCEPTED_STOP_REASONS:
        return f"the turn ended with stop reason {response.stop_reason!r} ({state.detail})"
    if response is not None and answer_wav(config.out_dir, response.turn_id) is not None:
        return ""
    if observer.question_end_s is None:
        if waited_s <= config.load_timeout_s:
            return None
        return (f"the question did not arrive on audio/in within {config.load_timeout_s:.0f} s"
                if observer.saw_listening() else
                f"omni_node did not start listening within {config.load_timeout_s:.0f} s")
    if observer.now_s() - observer.question_end_s > config.answer_timeout_s:
        return f"no complete answer within {config.answer_timeout_s:.0f} s of the question"
    return None


def follow_turn(observer: DemoObserver, bringup: subprocess.Popen, config: DemoConfig) -> str:
    """Spin until the answer is complete; '' on success, else why the wait ended."""
    start = time.monotonic()
    while bringup.poll() is None:
        rclpy.spin_once(observer, timeout_sec=0.05)
        if observer.state.label == STATE_LISTENING:
            observer.listen_to_question()
        problem = waiting_problem(observer, config, time.monotonic() - start)
        if problem is not None:
            return problem
    return f"the bringup process exited early with status {bringup.returncode}"


def stop_bringup(bringup: subprocess.Popen) -> int:
    """SIGINT the child (it writes open WAVs and frees the model), kill it after 30 s."""
    if bringup.poll() is None:
        bringup.send_signal(signal.SIGINT)
        try:
            bringup.wait(timeout=30)
        except subprocess.TimeoutExpired:
            bringup.kill()
            bringup.wait()
    return bringup.returncode


def run_demo(config: DemoConfig) -> int:
    """Run the demo; 0 only when every check printed at the end passed."""
    omni_params, tiny = prepare_outputs(config)
    if tiny:
        print(TINY_BANNER, flush=True)
    try:
        question_wav = speak_to_wav(config.question, config.out_dir / "question.wav")
    except (OSError, subprocess.CalledProcessError) as error:
        raise ConfigError(f"speaking the question with espeak-ng and sox failed ({error}); "
                          "scripts/setup.sh installs both") from error
    question_s = soundfile.info(str(question_wav)).duration
    scene = draw_table_scene()
    cv2.imwrite(str(config.out_dir / "scene.png"), cv2.cvtColor(scene, cv2.COLOR_RGB2BGR))
    print(f"question ({question_s:.1f} s, espeak-ng): {config.question!r}; image: a table with "
          f"a red cup; nodes log to {config.out_dir / 'bringup.log'}", flush=True)
    rclpy.init()
    bringup = start_bringup(config, omni_params, question_wav)
    observer = DemoObserver(scene, config.image_rate_hz, question_s)
    try:
        failure = follow_turn(observer, bringup, config)
    except (KeyboardInterrupt, ExternalShutdownException):
        failure = "interrupted"
    finally:
        bringup_status = stop_bringup(bringup)
        observer.destroy_node()
        rclpy.try_shutdown()
    checks = check_arrivals(observer.arrivals, config.out_dir, str(omni_params["cosyvoice.path"]),
                            bringup_status)
    return report(checks, failure, tiny, config.out_dir / "bringup.log")
