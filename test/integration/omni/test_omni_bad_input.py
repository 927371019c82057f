"""Malformed or unusual input is logged, counted in /diagnostics and dropped; serving goes on."""
from __future__ import annotations

import numpy as np
from action_msgs.msg import GoalStatus
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.action import ActionClient
from rclpy.qos import qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import Image

from stream_omni_ros.action import Converse
from stream_omni_ros.msg import AudioChunk, NodeState
from stream_omni_ros.nodes.audio_conversions import pcm_to_audio_msg
from stream_omni_ros.nodes.conversions import rgb_to_image_msg


def bad_audio() -> list[AudioChunk]:
    """One chunk per defect: encoding, size, rate 0 and 3999 Hz, empty, 33 channels, NaN,
    3 s in one chunk."""
    good = pcm_to_audio_msg(np.zeros(320, np.float32), 16000)
    unknown = pcm_to_audio_msg(np.zeros(320, np.float32), 16000)
    unknown.encoding = "U8"
    odd_size = pcm_to_audio_msg(np.zeros(320, np.float32), 16000)
    odd_size.data = bytes(odd_size.data)[:-1]
    rate_zero = pcm_to_audio_msg(np.zeros(320, np.float32), 16000)
    rate_zero.sample_rate = 0
    rate_low = pcm_to_audio_msg(np.zeros(320, np.float32), 3999)
    empty = pcm_to_audio_msg(np.zeros(320, np.float32), 16000)
    empty.data = b""
    many_channels = pcm_to_audio_msg(np.zeros((10, 33), np.float32), 16000)
    nan = pcm_to_audio_msg(np.full(320, np.nan, np.float32), 16000, encoding="F32LE")
    too_long = pcm_to_audio_msg(np.zeros(48000, np.float32), 16000)
    return [good, unknown, odd_size, rate_zero, rate_low, empty, many_channels, nan, too_long]


def unusual_audio() -> list[AudioChunk]:
    """Valid chunks the node converts: 8 kHz, 44.1 kHz and stereo."""
    noise = np.random.default_rng(0).normal(0, 0.01, (882, 2)).astype(np.float32)
    return [pcm_to_audio_msg(noise[:160, 0], 8000), pcm_to_audio_msg(noise[:, 0], 44100),
            pcm_to_audio_msg(noise[:320], 16000)]


def bad_images() -> list[Image]:
    """Unknown encoding, data size that does not match step * height, odd-width YUV, a step
    shorter than a row, 20 megapixels."""
    rgb = np.zeros((8, 10, 3), np.uint8)
    unknown = rgb_to_image_msg(rgb)
    unknown.encoding = "weird16"
    short = rgb_to_image_msg(rgb)
    short.data = bytes(short.data)[:-7]
    odd_yuv = rgb_to_image_msg(np.zeros((8, 9, 3), np.uint8))
    odd_yuv.encoding, odd_yuv.step = "yuv422", 18
    odd_yuv.data = bytes(18 * 8)
    short_step = rgb_to_image_msg(rgb)
    short_step.step, short_step.data = 20, bytes(20 * 8)
    huge = rgb_to_image_msg(rgb)
    huge.width, huge.height = 5000, 4000  # the fields alone refuse it: nothing is decoded
    return [unknown, short, odd_yuv, short_step, huge]


def stamped(msg: Image, seconds: float) -> Image:
    """The frame with its capture stamp set."""
    msg.header.stamp = Time(nanoseconds=int(seconds * 1e9)).to_msg()
    return msg


def camera_frames(start_s: float) -> list[Image]:
    """The bad frames one second apart, then three good ones stamped 1 ms apart (a flood)."""
    frames = [stamped(msg, start_s + index) for index, msg in enumerate(bad_images())]
    good = np.zeros((8, 10, 3), np.uint8)
    return frames + [stamped(rgb_to_image_msg(good), start_s + 10 + 0.001 * n) for n in range(3)]


def test_bad_messages_are_counted_and_the_node_keeps_serving(start_omni, peer, helpers):
    diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
    states = peer.collect(NodeState, "state", helpers.LATCHED)
    # at 2 Hz the bucket holds one frame: of frames stamped 1 ms apart only the first passes
    omni = start_omni(**{"image.max_rate_hz": 2.0, "diagnostics_period_s": 0.1})
    helpers.wait_until(lambda: states and states[-1].listening, what="the node listening")
    audio = peer.node.create_publisher(AudioChunk, "audio/in", helpers.RELIABLE)
    camera = peer.node.create_publisher(Image, "image", qos_profile_sensor_data)
    helpers.wait_heard(peer, audio, camera)

    def counts() -> dict[str, str]:
        return {kv.key: kv.value for kv in diagnostics[-1].status[0].values} \
            if diagnostics else {}

    def images_seen() -> int:
        return sum(int(v) for k, v in counts().items() if k.startswith("image."))
    # the node's own readers report the peer's publishers (and none on audio/played)
    helpers.wait_until(lambda: (counts().get("publishers.audio_in"), counts().get(
        "publishers.image"), counts().get("publishers.audio_played")) == ("1", "1", "0"),
        what="the node's readers counting the peer's publishers")
    for seq, msg in enumerate(bad_audio() + unusual_audio()):
        msg.seq = seq
        audio.publish(msg)  # a deep queue: none is lost however fast they come
    # The camera queue holds one frame: each is sent once the node has counted the last one.
    start_s = peer.node.get_clock().now().nanoseconds * 1e-9 - 60  # never in the future
    for index, msg in enumerate(camera_frames(start_s)):
        camera.publish(msg)
        helpers.wait_until(lambda: images_seen() > index, what=f"camera frame {index} counted")

    expected = {"audio.dropped.encoding": "1", "audio.dropped.size": "1",
                "audio.dropped.sample_rate": "2", "audio.dropped.empty": "1",
                "audio.dropped.channels": "1", "audio.dropped.not_finite": "1",
                "audio.dropped.too_long": "1",
                "audio.converted.8000hz_1ch": "1", "audio.converted.44100hz_1ch": "1",
                "audio.converted.16000hz_2ch": "1", "image.dropped.encoding": "1",
                "image.dropped.size": "1", "image.dropped.odd_width": "1",
                "image.dropped.step": "1", "image.dropped.too_large": "1",
                "image.accepted": "1", "image.dropped.rate_limit": "2"}

    def counted() -> bool:
        values = counts()
        return all(values.get(k) == v for k, v in expected.items()) and \
            not any(".invalid" in key for key in values)  # every drop says why
    try:
        helpers.wait_until(counted, what="the counts")
    except AssertionError:
        raise AssertionError(f"expected {expected}; got {counts()}")
    assert diagnostics[-1].status[0].level == b"\x01"  # WARN: messages were dropped
    log = omni.log()
    for reason in ("encoding", "size", "sample_rate", "empty", "channels", "not_finite",
                   "too_long", "odd_width", "step", "too_large", "rate_limit"):
        assert f"({reason}, 1 so far)" in log, reason
    assert "weird16" in log and "U8" in log

    client = ActionClient(peer.node, Converse, "/omni_node/converse")
    helpers.wait_for_action(peer, client)
    goal = client.send_goal_async(Converse.Goal(text="Are you still there?"))
    helpers.wait_until(goal.done, what="goal acceptance")
    result = goal.result().get_result_async()
    helpers.wait_until(result.done, what="the answer")
    assert result.result().status == GoalStatus.STATUS_SUCCEEDED
    assert result.result().result.response


def test_goal_audio_is_refused_and_counted_like_audio_in(start_omni, peer, helpers):
    """A 2 kHz chunk and a 64-channel chunk are refused on audio/in and in a Converse goal
    alike, each counted under its reason: sample_rate and channels."""
    diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
    states = peer.collect(NodeState, "state", helpers.LATCHED)
    start_omni(diagnostics_period_s=0.1)
    helpers.wait_until(lambda: states and states[-1].listening, what="the node listening")
    slow = pcm_to_audio_msg(np.zeros(200, np.float32), 2000)
    wide = pcm_to_audio_msg(np.zeros((10, 64), np.float32), 16000)
    audio = peer.node.create_publisher(AudioChunk, "audio/in", helpers.RELIABLE)
    helpers.wait_heard(peer, audio)
    for seq, msg in enumerate([slow, wide]):
        msg.seq = seq
        audio.publish(msg)

    client = ActionClient(peer.node, Converse, "/omni_node/converse")
    helpers.wait_for_action(peer, client)
    for msg, words in ((slow, "sample_rate 2000"), (wide, "channels 64")):
        sent = client.send_goal_async(Converse.Goal(audio=[msg]))
        helpers.wait_until(sent.done, what="goal acceptance")
        reply = sent.result().get_result_async()
        helpers.wait_until(reply.done, what="the result")
        assert reply.result().status == GoalStatus.STATUS_ABORTED
        assert "audio[0]" in reply.result().result.error
        assert words in reply.result().result.error

    expected = {"audio.dropped.sample_rate": "1", "audio.dropped.channels": "1",
                "converse.dropped.sample_rate": "1", "converse.dropped.channels": "1"}

    def counts() -> dict[str, str]:
        return {kv.key: kv.value for kv in diagnostics[-1].status[0].values} \
            if diagnostics else {}
    try:
        helpers.wait_until(lambda: all(counts().get(k) == v for k, v in expected.items()),
                           what="the counts")
    except AssertionError:
        raise AssertionError(f"expected {expected}; got {counts()}")
    assert not any(".invalid" in key for key in counts())  # every drop says why
