"""Camera and microphone faults met in the field: each is refused or ended, counted and logged.

Future-stamped frames, decompression bombs, frames lost in DDS, a microphone that dies
mid-utterance, push-to-talk refusals and not-a-number goal options, against omni_node in its
own process.
"""
from __future__ import annotations

import threading
import time
import zlib

import cv2
import numpy as np
from action_msgs.msg import GoalStatus
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.action import ActionClient
from rclpy.duration import Duration
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import SetBool

from stream_omni_ros.action import Converse
from stream_omni_ros.msg import AudioChunk, NodeState, ResponseText
from stream_omni_ros.nodes.audio_conversions import pcm_to_audio_msg
from stream_omni_ros.nodes.conversions import rgb_to_image_msg

FAST_REPORTS = {"responder": "echo", "diagnostics_period_s": 0.2}


class Diagnostics:
    """The node's /diagnostics values, newest first."""

    def __init__(self, peer) -> None:
        self.arrays = peer.collect(DiagnosticArray, "/diagnostics")

    def values(self) -> dict[str, str]:
        """Key -> value of the newest status (empty before the first)."""
        arrays = self.arrays
        return {kv.key: kv.value for kv in arrays[-1].status[0].values} if arrays else {}

    def count(self, key: str) -> int:
        """A counter of the newest status (0 when absent)."""
        return int(self.values().get(key, 0))


def converse(peer, helpers, goal: Converse.Goal):
    """Send a goal and wait for its (status, result)."""
    client = ActionClient(peer.node, Converse, "/omni_node/converse")
    helpers.wait_for_action(peer, client)
    sent = client.send_goal_async(goal)
    helpers.wait_until(sent.done, 30, "goal acceptance")
    reply = sent.result().get_result_async()
    helpers.wait_until(reply.done, 60, "the result")
    return reply.result().status, reply.result().result


def publish_until(publisher, make_msg, counted, helpers, what: str) -> None:
    """Publish (best effort, so maybe more than once) until `counted()` holds."""
    deadline = time.monotonic() + 60
    while not counted():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        publisher.publish(make_msg())
        for _ in range(25):  # up to 0.5 s for the node's counters to show it
            if counted():
                return
            time.sleep(0.02)


def stamp_ns(stamp) -> int:
    """A builtin_interfaces/Time in nanoseconds."""
    return stamp.sec * 10**9 + stamp.nanosec


def test_future_stamped_frames_never_pin_the_camera(start_omni, peer, helpers):
    diagnostics = Diagnostics(peer)
    omni = start_omni(**FAST_REPORTS, **{"image.buffer_length": 3, "image.max_rate_hz": 1000.0})
    camera = peer.node.create_publisher(Image, "image", qos_profile_sensor_data)
    helpers.wait_heard(peer, camera)
    clock = peer.node.get_clock()

    def frame(offset_s: float) -> Image:
        msg = rgb_to_image_msg(np.zeros((8, 10, 3), np.uint8))
        msg.header.stamp = (clock.now() + Duration(nanoseconds=int(offset_s * 1e9))).to_msg()
        return msg

    def seen() -> int:  # counted however the node treats them
        return diagnostics.count("image.accepted") + diagnostics.count("image.dropped.future")
    for n in range(1, 7):  # twice image.buffer_length frames from 1000 s ahead (a clock step)
        publish_until(camera, lambda: frame(1000.0), lambda: seen() >= n, helpers, "a frame")

    sent: list[int] = []  # then a live camera, until the answer is in
    stop = threading.Event()

    def stream() -> None:
        while not stop.is_set():
            msg = frame(0.0)
            sent.append(stamp_ns(msg.header.stamp))
            camera.publish(msg)
            time.sleep(0.05)
    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    try:
        helpers.wait_until(lambda: seen() >= 9, 60, "live frames")
        status, result = converse(peer, helpers, Converse.Goal(text="What do you see?"))
    finally:
        stop.set()
        streamer.join()
    assert status == GoalStatus.STATUS_SUCCEEDED, result.error
    used = stamp_ns(result.image_stamp)  # via float seconds: within microseconds
    assert result.used_image and min(abs(used - s) for s in sent) < 10_000, \
        "the answer used a frame stamped in the future, not the live camera"
    assert diagnostics.count("image.dropped.future") >= 6
    assert "image.max_future_s" in omni.log()


def grey_png_bomb(width: int, height: int) -> bytes:
    """A valid grey PNG of black rows: about 140 KB that decode to width x height."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (len(body).to_bytes(4, "big") + kind + body
                + zlib.crc32(kind + body).to_bytes(4, "big"))
    squeeze = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte, then the pixels
    idat = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def test_decompression_bombs_are_refused_before_decoding(start_omni, peer, helpers):
    diagnostics = Diagnostics(peer)
    omni = start_omni(**FAST_REPORTS, **{"image.compressed": True})
    camera = peer.node.create_publisher(CompressedImage, "image", qos_profile_sensor_data)
    helpers.wait_heard(peer, camera)
    helpers.wait_until(lambda: diagnostics.count("process_memory_mb") > 0, 30, "diagnostics")
    memory_before = diagnostics.count("process_memory_mb")
    bomb = grey_png_bomb(12000, 12000)  # 12000 x 12000 RGB would be 412 MiB per frame

    def seen() -> int:
        return diagnostics.count("image.accepted") + diagnostics.count("image.dropped.too_large")
    for n in range(1, 4):
        publish_until(camera, lambda: CompressedImage(format="png", data=bomb),
                      lambda: seen() >= n, helpers, "a bomb")
    small = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
    publish_until(camera, lambda: CompressedImage(format="jpeg", data=small),
                  lambda: diagnostics.count("image.accepted") >= 1, helpers, "a small frame")
    assert diagnostics.count("image.dropped.too_large") >= 3
    assert diagnostics.count("process_memory_mb") - memory_before < 300
    assert "12000x12000" in omni.log() and "image.max_pixels" in omni.log()


def test_microphone_that_dies_mid_utterance_ends_the_turn(start_omni, peer, helpers):
    diagnostics = Diagnostics(peer)
    states = peer.collect(NodeState, "state", helpers.LATCHED)
    finals = peer.collect(ResponseText, "response/final")
    omni = start_omni(**FAST_REPORTS, **{"listen.mode": "push_to_talk",
                                         "audio.stall_timeout_s": 1.0})
    audio = peer.node.create_publisher(AudioChunk, "audio/in", helpers.RELIABLE)
    helpers.wait_heard(peer, audio)
    pressed = helpers.call_service(peer, SetBool, "/omni_node/push_to_talk",
                                   SetBool.Request(data=True))
    assert pressed.success, pressed.message
    for seq in range(25):  # half a second of audio, then the driver crashes
        audio.publish(pcm_to_audio_msg(np.full(320, 0.1, np.float32), 16000, seq=seq))
    helpers.wait_until(lambda: any(s.state == NodeState.USER_SPEAKING for s in states), 30,
                       "user_speaking")
    speaking = next(s for s in states if s.state == NodeState.USER_SPEAKING)
    helpers.wait_until(lambda: states[-1].state == NodeState.IDLE, 30,
                       "the watchdog to end the utterance")
    helpers.wait_until(lambda: finals, 10, "response/final of the abandoned turn")
    assert finals[-1].turn_id == speaking.turn_id and finals[-1].stop_reason == "cancelled"
    helpers.wait_until(lambda: diagnostics.count("engine.InputWarning.audio_lost") == 1, 10,
                       "the count")
    assert "abandoned" in omni.log()


def test_goal_options_that_are_not_numbers_are_rejected(start_omni, peer, helpers):
    start_omni(responder="echo")
    for field in ("temperature", "top_p"):
        goal = Converse.Goal(text="Hello there")
        setattr(goal, field, float("nan"))
        status, result = converse(peer, helpers, goal)
        assert status == GoalStatus.STATUS_ABORTED, field
        assert field in result.error and "not a number" in result.error
    status, result = converse(peer, helpers, Converse.Goal(text="Hello there"))
    assert status == GoalStatus.STATUS_SUCCEEDED, result.error


def test_push_to_talk_refusals_are_counted_and_logged_once(start_omni, peer, helpers):
    diagnostics = Diagnostics(peer)
    omni = start_omni(**FAST_REPORTS, log_throttle_s=600.0)  # listen.mode always
    for press in (True, False) * 3:
        reply = helpers.call_service(peer, SetBool, "/omni_node/push_to_talk",
                     SetBool.Request(data=press))
        assert not reply.success and "needs listen.mode push_to_talk" in reply.message
    helpers.wait_until(lambda: diagnostics.count("push_to_talk.refused") == 6, 10, "the count")
    assert omni.log().count("needs listen.mode push_to_talk") == 1


def test_every_large_frame_is_accounted_for_even_when_dds_loses_it(start_omni, peer, helpers):
    diagnostics = Diagnostics(peer)
    start_omni(**FAST_REPORTS)
    camera = peer.node.create_publisher(Image, "image", qos_profile_sensor_data)
    helpers.wait_heard(peer, camera)
    # 3 MB best-effort samples: where the transport cannot carry them whole (small socket
    # buffers) the middleware reports each one lost once the next one shows the gap.
    big = rgb_to_image_msg(np.zeros((1000, 1000, 3), np.uint8))

    def accounted() -> int:
        values = diagnostics.values()
        return int(values.get("image.accepted", 0)) + sum(
            int(v) for k, v in values.items() if k.startswith("image.dropped."))
    small = rgb_to_image_msg(np.zeros((8, 10, 3), np.uint8))
    # A small frame first: the reader learns where the writer's sequence numbers stand.
    publish_until(camera, lambda: small, lambda: accounted() >= 1, helpers, "a small frame")
    for n in range(1, 4):  # one at a time: the depth-1 queue never overwrites one unread
        camera.publish(big)
        helpers.wait_until(lambda: accounted() >= n, 30,
                           f"big frame {n - 1} to be accepted or counted as lost")
        time.sleep(0.2)  # a camera's pace; the next frame shows the gap if this one is lost
    camera.publish(small)
    helpers.wait_until(lambda: accounted() >= 4, 30, "the last big frame to be accounted for")
    values = diagnostics.values()
    assert set(k for k in values if k.startswith("image.dropped.")) <= {
        "image.dropped.dds_lost"}, values
    if "image.dropped.dds_lost" in values:
        assert int(values["messages_dropped"]) >= int(values["image.dropped.dds_lost"])
