"""A session (audio, camera, transcripts) recorded to an MCAP bag with rosbags reads back equal."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from stream_omni_ros.msg import AudioChunk, Transcript
from stream_omni_ros.nodes.audio_conversions import pcm_to_audio_msg
from stream_omni_ros.nodes.conversions import rgb_to_image_msg

ROOT = Path(__file__).resolve().parents[3]


def typestore_with_our_messages():
    """The Kilted typestore plus stream_omni_ros/msg/* read from msg/*.msg."""
    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for path in sorted((ROOT / "msg").glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"stream_omni_ros/msg/{path.stem}"))
    store.register(types)
    return store


def session() -> list[tuple[str, str, int, object]]:
    """(topic, type name, receive time ns, message) of a short spoken question about an image."""
    records = []
    for seq in range(5):
        stamp = Time(sec=100, nanosec=seq * 20_000_000)
        samples = np.sin(np.arange(320) * 0.1 + seq).astype(np.float32) * 0.3
        records.append(("/audio/in", "stream_omni_ros/msg/AudioChunk", 100 * 10**9 + seq,
                        pcm_to_audio_msg(samples, 16000, stamp=stamp, frame_id="mic", seq=seq)))
    rgb = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    records.append(("/image", "sensor_msgs/msg/Image", 100 * 10**9 + 10,
                    rgb_to_image_msg(rgb, "bgr8", stamp=Time(sec=100), frame_id="camera")))
    records.append(("/asr/final", "stream_omni_ros/msg/Transcript", 101 * 10**9, Transcript(
        turn_id=1, seq=2, text="what colour is the cup? ça va", is_final=True,
        audio_start=Time(sec=100), audio_end=Time(sec=100, nanosec=80_000_000))))
    return records


def test_session_round_trips_through_an_mcap_bag(tmp_path):
    store = typestore_with_our_messages()
    records = session()
    bag = tmp_path / "session"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {}
        for topic, type_name, _, _ in records:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, type_name, typestore=store)
        for topic, _, time_ns, msg in records:
            writer.write(connections[topic], time_ns, bytes(serialize_message(msg)))
    assert list(bag.glob("*.mcap"))
    with Reader(bag) as reader:
        read = [(c.topic, c.msgtype, t, bytes(raw)) for c, t, raw in reader.messages()]
    assert [(t, n, ts) for t, n, ts, _ in read] == [(t, n, ts) for t, n, ts, _ in records]
    for (_, _, _, raw), (_, _, _, msg) in zip(read, records):
        assert deserialize_message(raw, type(msg)) == msg


def test_registered_definitions_match_the_generated_messages():
    store = typestore_with_our_messages()
    chunk = pcm_to_audio_msg(np.zeros(4, np.float32), 22050, turn_id=9, seq=3, is_final=True)
    decoded = store.deserialize_cdr(bytes(serialize_message(chunk)),
                                    "stream_omni_ros/msg/AudioChunk")
    assert (decoded.sample_rate, decoded.turn_id, decoded.seq, decoded.is_final) == (
        22050, 9, 3, True)
    assert bytes(decoded.data) == bytes(chunk.data) and decoded.encoding == "S16LE"
    transcript = store.deserialize_cdr(bytes(serialize_message(session()[-1][3])),
                                       "stream_omni_ros/msg/Transcript")
    assert transcript.text == "what colour is the cup? ça va"
    assert transcript.audio_end.nanosec == 80_000_000
    # And back: what rosbags writes, rclpy reads as the same message (padding bytes may differ).
    reencoded = bytes(store.serialize_cdr(decoded, "stream_omni_ros/msg/AudioChunk"))
    assert deserialize_message(reencoded, AudioChunk) == chunk
