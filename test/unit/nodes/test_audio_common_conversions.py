"""Standard audio / HRI message fields <-> our audio and transcript (pure functions, no ROS).

The last test checks how the bridge picks the interface packages (it imports rclpy).
"""
from __future__ import annotations

import numpy as np
import pytest

from stream_omni_ros.errors import ConfigError, InputError
from stream_omni_ros.nodes.audio_common_bridge import PlayOutputConfig
from stream_omni_ros.nodes.audio_common_conversions import (MonoResampler, WaveFormat,
                                                           audio_info_to_wave_format,
                                                           float_to_wave_bytes,
                                                           transcript_to_live_speech,
                                                           voice_id_to_speech_topic,
                                                           wave_bytes_to_float,
                                                           wave_bytes_to_frames)


@pytest.mark.parametrize("coding,fmt,channels,rate", [
    ("wave", "S16LE", 1, 16000), ("WAVE", "F32LE", 2, 48000), ("wave", "S16LE", 6, 8000)])
def test_wave_info_of_any_rate_channels_and_format_is_accepted(coding, fmt, channels, rate):
    wave = audio_info_to_wave_format(coding, fmt, channels, rate)
    assert wave == WaveFormat(rate, channels, fmt)
    assert wave.frame_bytes == channels * {"S16LE": 2, "F32LE": 4}[fmt]
    assert wave.bitrate == rate * wave.frame_bytes * 8


def test_mp3_is_refused_naming_the_capture_nodes_wave_setting():
    with pytest.raises(InputError) as err:
        audio_info_to_wave_format("mp3", "S16LE", 1, 16000)
    assert err.value.reason == "coding_format"
    assert "'mp3'" in str(err.value) and "format:=wave" in str(err.value)


@pytest.mark.parametrize("fields,reason", [
    (("opus", "S16LE", 1, 16000), "coding_format"),
    (("wave", "S24LE", 1, 16000), "encoding"),
    (("wave", "U8", 1, 16000), "encoding"),
    (("wave", "S16LE", 0, 16000), "channels"),
    (("wave", "S16LE", 33, 16000), "channels"),
    (("wave", "S16LE", 1, 0), "sample_rate"),
    (("wave", "S16LE", 1, 10**6), "sample_rate")])
def test_other_infos_are_refused_under_their_reason(fields, reason):
    with pytest.raises(InputError) as err:
        audio_info_to_wave_format(*fields)
    assert err.value.reason == reason


def test_wave_bytes_are_whole_frames_within_the_size_bound():
    stereo = WaveFormat(48000, 2, "S16LE")
    assert wave_bytes_to_frames(bytes(400), stereo, max_bytes=1000) == 100
    for data, reason in ((b"", "empty"), (bytes(402), "size"),
                         (bytes(1004), "too_large")):
        with pytest.raises(InputError) as err:
            wave_bytes_to_frames(data, stereo, max_bytes=1000)
        assert err.value.reason == reason


@pytest.mark.parametrize("fmt", ["S16LE", "F32LE"])
def test_float_to_wave_bytes_round_trips(fmt):
    rng = np.random.default_rng(0)
    samples = (np.round(rng.uniform(-1, 1, (50, 2)) * 32767) / 32768).astype(np.float32)
    data = float_to_wave_bytes(samples, fmt)
    assert len(data) == samples.size * {"S16LE": 2, "F32LE": 4}[fmt]
    back = wave_bytes_to_float(data, WaveFormat(16000, 2, fmt))
    np.testing.assert_array_equal(back, samples)


def test_float_to_wave_bytes_clips_and_refuses_unknown_formats():
    data = float_to_wave_bytes(np.array([2.0, -2.0], np.float32), "S16LE")
    assert np.frombuffer(data, "<i2").tolist() == [32767, -32768]
    with pytest.raises(InputError):
        float_to_wave_bytes(np.zeros(2, np.float32), "MP3")


def test_mono_resampler_passes_the_target_rate_through_and_downmixes():
    resampler = MonoResampler(16000)
    stereo = np.stack([np.full(160, 0.5, np.float32), np.full(160, -0.1, np.float32)], axis=1)
    out = resampler.convert(stereo, 16000)
    np.testing.assert_allclose(out, np.full(160, 0.2, np.float32))
    assert resampler.flush().size == 0
    assert resampler.convert(np.zeros((0, 1), np.float32), 16000).size == 0  # a final chunk


def test_mono_resampler_resamples_chunks_seamlessly_to_the_target_rate():
    rate, seconds = 22050, 1.0
    tone = np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate).astype(np.float32)
    resampler = MonoResampler(16000)
    parts = [resampler.convert(tone[i:i + 1000, None], rate) for i in range(0, len(tone), 1000)]
    out = np.concatenate(parts + [resampler.flush()])
    assert abs(len(out) - 16000 * seconds) <= 2
    expected = np.sin(2 * np.pi * 440 * np.arange(len(out)) / 16000)
    # away from the edges the streamed result is the tone at the new rate
    assert np.max(np.abs(out[400:-400] - expected[400:-400])) < 0.02


def test_transcript_maps_to_incremental_then_final():
    assert transcript_to_live_speech("hello rob", False) == ("hello rob", "")
    assert transcript_to_live_speech("hello robot", True) == ("", "hello robot")


def test_voice_id_gives_the_rep155_speech_topic():
    assert voice_id_to_speech_topic("anonymous_1") == "/humans/voices/anonymous_1/speech"
    for bad in ("", "a/b", "1abc", "a b"):
        with pytest.raises(ConfigError):
            voice_id_to_speech_topic(bad)


def test_interface_packages_are_used_only_when_they_have_the_messages():
    from stream_omni_ros.nodes.audio_common_bridge import import_interfaces
    module, why = import_interfaces("std_msgs", ("Header",))
    assert module is not None and why == ""
    # a package of the same name with other messages (mgonzs13's audio_common_msgs lacks
    # AudioDataStamped) is not used
    module, why = import_interfaces("std_msgs", ("Header", "AudioDataStamped"))
    assert module is None and "lacks ['AudioDataStamped']" in why
    module, why = import_interfaces("no_such_msgs", ("AudioData",))
    assert module is None and "no_such_msgs is not installed" in why
    assert "ros-" in why and "-no-such-msgs" in why


@pytest.mark.parametrize("lead_s, max_queue_s", [(0.01, 300.0), (11.0, 300.0), (5.0, 5.0),
                                                 (5.0, 2.0)])
def test_play_lead_outside_its_range_or_not_below_the_queue_is_refused(lead_s, max_queue_s):
    with pytest.raises(ConfigError, match=r"0.02 <= lead_s <= 10 and lead_s < max_queue_s"):
        PlayOutputConfig(lead_s=lead_s, max_queue_s=max_queue_s)
    assert PlayOutputConfig(lead_s=5.0, max_queue_s=5.5).lead_s == 5.0
