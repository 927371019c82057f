"""Push-to-talk over ROS: audio delivered late or faster than real time is kept, in full."""
from __future__ import annotations

import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.time import Time
from std_srvs.srv import SetBool

from stream_omni_ros.msg import AudioChunk, ResponseText, Transcript
from stream_omni_ros.nodes.audio_conversions import pcm_to_audio_msg

CHUNK = 320  # 20 ms at 16 kHz
NS_PER_SAMPLE = 62_500


def press(peer, helpers, pressed: bool) -> SetBool.Response:
    """Call omni_node's ~/push_to_talk and wait for its answer."""
    client = peer.node.create_client(SetBool, "/omni_node/push_to_talk")
    assert client.wait_for_service(timeout_sec=helpers.DEADLINE_S), "~/push_to_talk not offered"
    helpers.wait_discovered(peer)
    future = client.call_async(SetBool.Request(data=pressed))
    helpers.wait_until(future.done, what=f"~/push_to_talk({pressed})")
    return future.result()


def publish(publisher, samples: np.ndarray, first_ns: int, first_seq: int,
            real_time_factor: float = 0.0) -> int:
    """Publish samples as stamped 20 ms chunks (paced when a factor is given); next seq."""
    started = time.monotonic()
    seq = first_seq
    for first in range(0, len(samples), CHUNK):
        if real_time_factor:  # pacing of the publisher only; nothing waits on it
            time.sleep(max(0.0, started + first / 16000 / real_time_factor - time.monotonic()))
        publisher.publish(pcm_to_audio_msg(
            samples[first:first + CHUNK], 16000, frame_id="mic_link", seq=seq,
            stamp=Time(nanoseconds=first_ns + first * NS_PER_SAMPLE).to_msg()))
        seq += 1
    return seq


def span_ns(transcript: Transcript) -> tuple[int, int]:
    """audio_start and audio_end of a transcript in nanoseconds."""
    return (Time.from_msg(transcript.audio_start).nanoseconds,
            Time.from_msg(transcript.audio_end).nanoseconds)


def echo_push_to_talk(start_omni, **params):
    """omni_node answering with the echo responder (its transcript tells the seconds heard)."""
    return start_omni(**{"responder": "echo", "listen.mode": "push_to_talk",
                         "speech.enabled": False, **params})


def test_audio_published_before_the_release_but_delivered_after_it_is_kept(
        start_omni, peer, helpers, speak):
    finals = peer.collect(Transcript, "asr/final")
    responses = peer.collect(ResponseText, "response/final")
    echo_push_to_talk(start_omni, **{"listen.late_audio_wait_s": 30.0})
    audio = peer.node.create_publisher(AudioChunk, "audio/in", helpers.RELIABLE)
    helpers.wait_heard(peer, audio)
    clock = peer.node.get_clock()
    speech = speak("Hello robot, look at this")[:16000]  # one second of speech
    assert press(peer, helpers, True).success
    start_ns = clock.now().nanoseconds  # every sample is stamped after the press
    seq = publish(audio, speech[:8000], start_ns, 0)
    # The user lets go once the second is over; its last half second is still on its way.
    helpers.wait_until(lambda: clock.now().nanoseconds > start_ns + 1_000_000_000,
                       what="one second after the first sample")
    assert press(peer, helpers, False).success
    released_ns = clock.now().nanoseconds
    seq = publish(audio, speech[8000:], start_ns + 8000 * NS_PER_SAMPLE, seq)
    # the microphone streams on past the release, as a live one does
    after = np.zeros((released_ns - start_ns) // NS_PER_SAMPLE - 16000 + 3200, np.float32)
    publish(audio, after, start_ns + 16000 * NS_PER_SAMPLE, seq)

    helpers.wait_until(lambda: finals and responses, what="transcript and response")
    first_ns, end_ns = span_ns(finals[-1])
    assert abs(first_ns - start_ns) < 100_000  # from the first sample after the press ...
    assert start_ns + 1_000_000_000 <= end_ns <= released_ns  # ... to the release: all of it
    assert responses[-1].turn_id == finals[-1].turn_id


def test_audio_replayed_at_four_times_real_time_reaches_the_engine_in_full(
        start_omni, peer, helpers):
    finals = peer.collect(Transcript, "asr/final")
    diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
    echo_push_to_talk(start_omni, diagnostics_period_s=0.2)
    audio = peer.node.create_publisher(AudioChunk, "audio/in", helpers.RELIABLE)
    helpers.wait_heard(peer, audio)

    def counts() -> dict[str, str]:
        return {kv.key: kv.value for kv in diagnostics[-1].status[0].values} \
            if diagnostics else {}
    assert press(peer, helpers, True).success
    # A bag recorded a minute ago, replayed at 4x: its stamps are its own, not the clock's.
    recorded_ns = peer.node.get_clock().now().nanoseconds - 60_000_000_000
    replay = np.random.default_rng(3).uniform(-0.3, 0.3, 10 * 16000).astype(np.float32)
    chunks = publish(audio, replay, recorded_ns, 0, real_time_factor=4.0)
    helpers.wait_until(lambda: counts().get("audio.accepted") == str(chunks),
                       what=f"{chunks} chunks accepted")
    assert press(peer, helpers, False).success
    helpers.wait_until(lambda: finals, what="the transcript")
    assert finals[-1].text == "(10.0 s of speech)"  # every sample reached the engine
    first_ns, end_ns = span_ns(finals[-1])
    assert abs(first_ns - recorded_ns) < 100_000 and abs(end_ns - first_ns - 10**10) < 100_000
    lost = {k: v for k, v in counts().items()
            if ".dropped." in k or k.endswith((".gap", ".late_audio", "_expired"))}
    assert not lost, lost
