"""A spoken question and a camera frame in; transcripts, response, speech and state out."""
from __future__ import annotations

import time

import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import Image

from stream_omni_ros.msg import AudioChunk, NodeState, ResponseText, Transcript
from stream_omni_ros.nodes.audio_conversions import audio_msg_to_pcm, pcm_to_audio_msg
from stream_omni_ros.nodes.conversions import rgb_to_image_msg

CHUNK = 320  # 20 ms at 16 kHz
OUTPUTS = {"asr/partial": Transcript, "asr/final": Transcript,
           "response/partial": ResponseText, "response/final": ResponseText,
           "audio/out": AudioChunk}


def seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def play_with_camera(peer, helpers, speech: np.ndarray) -> tuple[float, list[float]]:
    """Publish speech as stamped chunks (2x real time) and a camera frame every 0.2 s."""
    audio = peer.node.create_publisher(AudioChunk, "audio/in", helpers.RELIABLE)
    camera = peer.node.create_publisher(Image, "image", qos_profile_sensor_data)
    helpers.wait_heard(peer, audio, camera)
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)
    start = peer.node.get_clock().now()
    image_stamps = []
    for seq, first in enumerate(range(0, len(speech), CHUNK)):
        stamp = start.nanoseconds + first * 62_500  # ns per sample at 16 kHz
        audio.publish(pcm_to_audio_msg(speech[first:first + CHUNK], 16000,
                                       stamp=Time(nanoseconds=stamp).to_msg(),
                                       frame_id="mic_link", seq=seq))
        if seq % 10 == 0:
            now = peer.node.get_clock().now()
            camera.publish(rgb_to_image_msg(rgb, "bgr8", stamp=now.to_msg(), frame_id="camera"))
            image_stamps.append(now.nanoseconds * 1e-9)
        time.sleep(0.01)
    return start.nanoseconds * 1e-9, image_stamps


def test_spoken_question_streams_transcript_response_and_speech(start_omni, peer, speak,
                                                                 helpers):
    out = {topic: peer.collect(msg_type, topic) for topic, msg_type in OUTPUTS.items()}
    states = peer.collect(NodeState, "state", helpers.LATCHED)
    start_omni()
    helpers.wait_until(lambda: any(s.label == "listening" for s in states),
                       what="omni_node to configure, activate and listen")
    speech = speak("Hello robot, what is on the table in front of you?")
    speech_start, image_stamps = play_with_camera(peer, helpers, speech)
    helpers.wait_until(lambda: out["response/final"] and out["audio/out"]
                       and out["audio/out"][-1].is_final, what="the end of the turn")

    turn_ids = {m.turn_id for msgs in out.values() for m in msgs}
    assert len(turn_ids) == 1 and 0 not in turn_ids, turn_ids
    assert out["asr/partial"], "no partial transcript while the user spoke"
    final_asr = out["asr/final"][-1]
    assert final_asr.is_final and final_asr.header.frame_id == "mic_link"
    assert [m.seq for m in out["asr/partial"] + out["asr/final"]] == \
        list(range(len(out["asr/partial"]) + 1))
    # the utterance lies within the published audio (stamps on the audio/in timeline)
    speech_end = speech_start + len(speech) / 16000
    assert speech_start - 0.05 <= seconds(final_asr.audio_start) < seconds(final_asr.audio_end)
    assert seconds(final_asr.audio_end) <= speech_end + 0.05

    partial, final = out["response/partial"], out["response/final"][-1]
    assert final.is_final and final.stop_reason in ("eos", "max_tokens", "max_units")
    assert final.text == "".join(m.delta for m in partial) and final.text
    assert final.used_image and final.image_frame_id == "camera"
    assert min(abs(seconds(final.image_stamp) - s) for s in image_stamps) < 1e-6
    assert [m.seq for m in partial + [final]] == list(range(len(partial) + 1))

    check_speech_and_order(out, final_asr, partial, final)

    labels = [s.label for s in states if s.turn_id in turn_ids]
    assert "user_speaking" in labels and ("thinking" in labels or "speaking" in labels)
    helpers.wait_until(lambda: states[-1].label == "listening", what="listening again")


def check_speech_and_order(out: dict, final_asr, partial: list, final) -> None:
    """audio/out is one numbered F32LE stream; outputs are stamped in production order."""
    chunks = out["audio/out"]
    assert {(c.sample_rate, c.channels, c.encoding) for c in chunks} == {(22050, 1, "F32LE")}
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert sum(audio_msg_to_pcm(c).samples.shape[0] for c in chunks) > 0
    # outputs are stamped by the node clock, in the order they were produced
    assert seconds(final_asr.header.stamp) <= seconds(partial[0].header.stamp)
    assert seconds(partial[0].header.stamp) <= seconds(final.header.stamp)
    audio_stamps = [seconds(c.header.stamp) for c in chunks]
    assert audio_stamps == sorted(audio_stamps)


def test_response_names_the_frame_the_turn_used_not_the_latest(start_omni, peer, speak,
                                                                helpers):
    finals = peer.collect(ResponseText, "response/final")
    transcripts = peer.collect(Transcript, "asr/final")
    states = peer.collect(NodeState, "state", helpers.LATCHED)
    start_omni()
    helpers.wait_until(lambda: states and states[-1].label == "listening", what="listening")
    audio = peer.node.create_publisher(AudioChunk, "audio/in", helpers.RELIABLE)
    camera = peer.node.create_publisher(Image, "image", qos_profile_sensor_data)
    helpers.wait_heard(peer, audio, camera)
    rgb = np.random.default_rng(1).integers(0, 256, (48, 64, 3), np.uint8)
    start = peer.node.get_clock().now().nanoseconds
    camera.publish(rgb_to_image_msg(rgb, "bgr8", stamp=Time(nanoseconds=start).to_msg(),
                                    frame_id="camera_a"))
    speech = speak("Hello robot, what is on the table?")
    trailing = len(speech) - 16000  # the last second is silence: the endpoint comes in it
    for seq, first in enumerate(range(0, len(speech), CHUNK)):
        if first == trailing - trailing % CHUNK:
            # arrives after the frame nearest the speech start and before the turn ends
            camera.publish(rgb_to_image_msg(rgb, "bgr8", frame_id="camera_b",
                                            stamp=peer.node.get_clock().now().to_msg()))
        stamp = Time(nanoseconds=start + first * 62_500).to_msg()  # ns per sample at 16 kHz
        audio.publish(pcm_to_audio_msg(speech[first:first + CHUNK], 16000, stamp=stamp,
                                       frame_id="mic_link", seq=seq))
        time.sleep(0.01)
    helpers.wait_until(lambda: finals, what="response/final")
    assert finals[-1].used_image and finals[-1].image_frame_id == "camera_a"
    assert seconds(finals[-1].image_stamp) == pytest.approx(start * 1e-9, abs=1e-6)
    assert transcripts and transcripts[-1].header.frame_id == "mic_link"
