"""ROS overhead: the omni_node graph with a pass-through model against direct engine calls.

The installed omni_node runs in its own process with `responder:=passthrough` (no model) in a
private namespace; this process publishes the same paced microphone chunks and camera frames and
timestamps what comes back. The direct side feeds the same audio to a ConversationEngine with the
same responder. Both take each question push-to-talk, released right after its audio: the
endpoint is that release on both sides (a voice-activity endpoint could differ by a chunk
between the two processes, which showed up as 40 or 80 ms of false overhead).
Importing this module needs rclpy: callers import it inside a guarded function.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from typing import IO

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_srvs.srv import SetBool

from stream_omni_ros.bench.config import BenchConfig
from stream_omni_ros.bench.engine_run import Microphone, run_engine_turns
from stream_omni_ros.bench.records import TurnRecord, percentiles, since
from stream_omni_ros.engine.audio_input import PcmChunk
from stream_omni_ros.engine.passthrough_responder import PassThroughResponder
from stream_omni_ros.errors import StreamOmniError
from stream_omni_ros.model.speech_tokenizer import MODEL_SAMPLE_RATE
from stream_omni_ros.msg import AudioChunk, ResponseText, Transcript
from stream_omni_ros.nodes.audio_conversions import audio_msg_to_pcm
from stream_omni_ros.nodes.conversions import rgb_to_image_msg
from stream_omni_ros.nodes.discovery import wait_discovered
from stream_omni_ros.nodes.executables import start_node, stop_node
from stream_omni_ros.nodes.stamps import seconds_to_time_msg

RELIABLE = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
START_TIMEOUT_S = 60.0
TURN_TIMEOUT_S = 60.0


class Observer:
    """Publishes microphone and camera messages; timestamps transcripts, text and audio."""

    def __init__(self, namespace: str) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node("bench_observer", namespace=namespace, context=self.context)
        self.audio_pub = self.node.create_publisher(AudioChunk, "audio/in", RELIABLE)
        self.push_to_talk = self.node.create_client(SetBool, "omni_node/push_to_talk")
        self.image_pub = self.node.create_publisher(Image, "image", qos_profile_sensor_data)
        self.arrivals: list[tuple[float, str, object]] = []
        self.done = threading.Event()
        for topic, kind in (("asr/partial", Transcript), ("asr/final", Transcript),
                            ("response/partial", ResponseText),
                            ("response/final", ResponseText), ("audio/out", AudioChunk)):
            self.node.create_subscription(kind, topic, self._receiver(topic), RELIABLE)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spin = threading.Thread(target=self.executor.spin, daemon=True)
        self._spin.start()

    def _receiver(self, topic: str):
        def receive(msg) -> None:
            self.arrivals.append((time.monotonic(), topic, msg))
            if self.turn_complete():
                self.done.set()
        return receive

    def turn_complete(self) -> bool:
        """Both the final response text and the final audio chunk have arrived."""
        topics = {(topic, getattr(msg, "is_final", False)) for _, topic, msg in self.arrivals}
        return {("response/final", True), ("audio/out", True)} <= topics

    def publish_audio(self, chunk: PcmChunk) -> None:
        """One microphone chunk as an AudioChunk message."""
        msg = AudioChunk(sample_rate=chunk.sample_rate, channels=1, encoding=chunk.encoding,
                         data=chunk.data, seq=chunk.seq or 0)
        msg.header.stamp = seconds_to_time_msg(chunk.stamp)
        msg.header.frame_id = "bench_microphone"
        self.audio_pub.publish(msg)

    def wait_for_node(self) -> None:
        """Until omni_node and this observer have matched each other's endpoints."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if (self.audio_pub.get_subscription_count() >= 1
                    and self.push_to_talk.service_is_ready()
                    and self.node.count_publishers(self._qualified("audio/out")) >= 1
                    and self.node.count_publishers(self._qualified("response/final")) >= 1):
                break
            time.sleep(0.1)
        else:
            raise StreamOmniError(f"omni_node (pass-through) did not match the bench topics "
                                  f"under {self.node.get_namespace()} within {START_TIMEOUT_S} s")
        if not wait_discovered(self.node, self._qualified("omni_node"), START_TIMEOUT_S):
            raise StreamOmniError("omni_node never answered get_parameters: it cannot hear the "
                                  "bench's audio/in publisher and push_to_talk client")

    def press(self, pressed: bool, wait: bool) -> None:
        """Call omni_node's ~/push_to_talk; with wait, until it answered (and fail if refused)."""
        future = self.push_to_talk.call_async(SetBool.Request(data=pressed))
        if not wait:
            return
        deadline = time.monotonic() + START_TIMEOUT_S
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.001)
        if not future.done() or not future.result().success:
            answer = future.result().message if future.done() else "no answer"
            raise StreamOmniError(f"omni_node ~/push_to_talk({pressed}) failed: {answer}")

    def _qualified(self, topic: str) -> str:
        return f"{self.node.get_namespace().rstrip('/')}/{topic}"

    def close(self) -> None:
        """Stop spinning and shut the private context down."""
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def start_passthrough_node(config: BenchConfig, namespace: str,
                           log: IO[bytes]) -> subprocess.Popen:
    """The installed omni_node answering with fixed-length pass-through turns, no model."""
    params = {"responder": "passthrough", "generation.max_new_tokens": config.text_tokens,
              "generation.max_new_units": config.units, "generation.ignore_stop_ids": True,
              "listen.mode": "push_to_talk"}
    # a file, not a pipe: nobody reads the log while the node runs, and a full pipe would block it
    return start_node("omni_node", params, {"__ns": namespace}, stdout=subprocess.DEVNULL,
                      stderr=log)


def log_tail(log: IO[bytes], chars: int = 2000) -> str:
    """The end of the node's log, for an error message."""
    log.seek(0)
    return log.read().decode("utf-8", "replace")[-chars:]


def ros_record(turn: int, arrivals: list, sent: list[float], endpoint: float) -> TurnRecord:
    """A TurnRecord from the messages of one ROS turn, relative to the endpoint."""
    def times(topics: tuple[str, ...], keep=lambda msg: True) -> list[float]:
        return [t for t, name, msg in arrivals if name in topics and keep(msg)]

    def first(moments: list[float]) -> float | None:
        return min(moments) - endpoint if moments else None

    text = times(("response/partial", "response/final"), lambda m: m.delta)
    audio = times(("audio/out",), lambda m: len(m.data) > 0)
    finals = times(("response/final",)) + times(("audio/out",), lambda m: m.is_final)
    transcript = times(("asr/final",))
    audio_s = sum(audio_msg_to_pcm(m).duration_s for _, name, m in arrivals
                  if name == "audio/out")
    timeline = {"microphone": since(sent, endpoint),
                "transcript": since(times(("asr/partial", "asr/final")), endpoint),
                "response text": since(text, endpoint), "audio": since(audio, endpoint)}
    return TurnRecord("ros_passthrough", turn, first(transcript), first(text), first(audio),
                      max(finals) - endpoint, len(text), None, audio_s, None,
                      {k: v for k, v in timeline.items() if v is not None})


def run_ros_turns(config: BenchConfig, questions: list[tuple[str, np.ndarray]],
                  image: np.ndarray, pad_after_s: float = 1.0) -> list[TurnRecord]:
    """The questions through omni_node (pass-through model), each one push-to-talk."""
    namespace = f"/stream_omni_bench_{os.getpid()}"
    log = tempfile.TemporaryFile()
    process = start_passthrough_node(config, namespace, log)
    observer, records = Observer(namespace), []
    try:
        try:
            observer.wait_for_node()
        except StreamOmniError as error:
            raise StreamOmniError(f"{error}; omni_node log:\n{log_tail(log)}") from error
        mic = Microphone(observer.publish_audio, config.pace)
        for turn, (_, speech) in enumerate(questions):
            observer.arrivals.clear()
            observer.done.clear()
            speech_end = mic.stamp + len(speech) / MODEL_SAMPLE_RATE - pad_after_s
            observer.image_pub.publish(rgb_to_image_msg(
                image, stamp=seconds_to_time_msg(speech_end), frame_id="bench_camera"))
            observer.press(True, wait=True)
            sent = mic.play(speech)
            # Released right after the question: the endpoint is this moment on both paths
            # (a voice-activity endpoint can differ by a chunk between two processes).
            endpoint = time.monotonic()
            observer.press(False, wait=False)
            if not observer.done.wait(TURN_TIMEOUT_S):
                raise StreamOmniError(f"ROS turn {turn}: no response/final and final audio/out "
                                      f"within {TURN_TIMEOUT_S} s (omni_node exit code "
                                      f"{process.poll()}); its log:\n{log_tail(log)}")
            records.append(ros_record(turn, list(observer.arrivals), sent, endpoint))
            mic.wait_out_answer(records[-1].audio_s or 0.0)
    finally:
        observer.close()
        stop_node(process, timeout_s=10.0)
        log.close()
    return records


def ros_overhead(config: BenchConfig, questions: list[tuple[str, np.ndarray]],
                 image: np.ndarray) -> tuple[dict[str, float], dict[str, list[TurnRecord]]]:
    """Per-turn ROS overhead figures and the pass-through records of both sides."""
    responder = PassThroughResponder(config.text_tokens, config.units)
    direct = run_engine_turns(responder, config, questions, image, path="direct_passthrough",
                              push_to_talk=True)
    ros = run_ros_turns(config, questions, image)
    figures = {}
    for name, field in (("overhead_per_turn_s", "total_s"),
                        ("transcript_overhead_s", "endpoint_to_transcript_s"),
                        ("first_text_overhead_s", "endpoint_to_first_text_s"),
                        ("first_audio_overhead_s", "endpoint_to_first_audio_s")):
        pairs = [(getattr(r, field), getattr(d, field)) for r, d in zip(ros, direct)]
        figures[name] = percentiles(a - b for a, b in pairs
                                    if a is not None and b is not None).p50
    return figures, {"ros_passthrough": ros, "direct_passthrough": direct}
