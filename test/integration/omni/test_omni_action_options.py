"""`~/converse` goals apply every field: goal audio, goal image, speak and generation limits."""
from __future__ import annotations

import numpy as np
import soxr
from action_msgs.msg import GoalStatus
from builtin_interfaces.msg import Time
from rclpy.action import ActionClient

from stream_omni_ros.action import Converse
from stream_omni_ros.msg import AudioChunk
from stream_omni_ros.nodes.audio_conversions import pcm_to_audio_msg
from stream_omni_ros.nodes.conversions import rgb_to_image_msg


def result_of(peer, helpers, goal: Converse.Goal):
    """Send a goal; return (status, result) once it ended."""
    client = ActionClient(peer.node, Converse, "/omni_node/converse")
    helpers.wait_for_action(peer, client)
    sent = client.send_goal_async(goal)
    helpers.wait_until(sent.done, what="goal acceptance")
    reply = sent.result().get_result_async()
    helpers.wait_until(reply.done, what="the result")
    return reply.result().status, reply.result().result


def stereo_chunks_44k(speech_16k: np.ndarray) -> list[AudioChunk]:
    """The question as a 44.1 kHz stereo microphone would have sent it, 100 ms a chunk."""
    stereo = np.repeat(soxr.resample(speech_16k, 16000, 44100)[:, None], 2, axis=1)
    return [pcm_to_audio_msg(stereo[i:i + 4410], 44100) for i in range(0, len(stereo), 4410)]


def test_goal_audio_image_and_options_are_applied(start_omni, peer, helpers, speak):
    audio_out = peer.collect(AudioChunk, "audio/out")
    start_omni()
    image = rgb_to_image_msg(np.random.default_rng(1).integers(0, 256, (32, 48, 3), np.uint8),
                             stamp=Time(sec=12, nanosec=500_000_000))
    goal = Converse.Goal(audio=stereo_chunks_44k(speak("Where is the blue box?")),
                         images=[image], speak=False, max_new_tokens=3)
    status, result = result_of(peer, helpers, goal)
    assert status == GoalStatus.STATUS_SUCCEEDED, result.error
    assert result.endpoint_to_transcript_s >= 0  # answered as speech, not as text
    assert 0 < result.text_tokens <= 3 and result.response
    assert result.used_image and (result.image_stamp.sec, result.image_stamp.nanosec) == (
        12, 500_000_000)
    assert result.audio_duration_s == 0 and result.endpoint_to_first_audio_s == -1.0
    silent_turn = result.turn_id

    broken = rgb_to_image_msg(np.zeros((8, 10, 3), np.uint8))
    broken.encoding = "weird16"
    status, result = result_of(peer, helpers, Converse.Goal(text="Hi", images=[broken]))
    assert status == GoalStatus.STATUS_ABORTED and "weird16" in result.error
    # checked after a whole further goal: speech of the silent turn would have come by now
    assert not [m for m in audio_out if m.turn_id == silent_turn]
    odd = pcm_to_audio_msg(np.zeros(320, np.float32), 16000)
    odd.data = bytes(odd.data)[:-1]
    status, result = result_of(peer, helpers, Converse.Goal(audio=[odd]))
    assert status == GoalStatus.STATUS_ABORTED and "audio[0]" in result.error

    status, result = result_of(peer, helpers, Converse.Goal(text="Still there?",
                                                            use_camera=False))
    assert status == GoalStatus.STATUS_SUCCEEDED and result.response and not result.used_image
    assert result.audio_duration_s > 0  # speak keeps the node's default (on)
