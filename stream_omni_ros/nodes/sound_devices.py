"""PortAudio (pyaudio) devices: open the library quietly and pick a device by name or index."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pyaudio

from stream_omni_ros.errors import ConfigError

INPUT = "input"
OUTPUT = "output"


@dataclass(frozen=True)
class SoundDevice:
    """One PortAudio device as the user sees it in error messages."""

    index: int
    name: str
    input_channels: int
    output_channels: int
    default_sample_rate: float

    def channels(self, direction: str) -> int:
        """Channels the device offers in `direction` ("input" or "output")."""
        return self.input_channels if direction == INPUT else self.output_channels


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    # PortAudio probes ALSA, JACK and OSS on start and prints every failed probe to fd 2;
    # those lines look like errors but are not, so they are hidden for this call only.
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def open_portaudio() -> pyaudio.PyAudio:
    """Initialise PortAudio without its device-probe noise on stderr."""
    with _stderr_silenced():
        return pyaudio.PyAudio()


def list_devices(audio: pyaudio.PyAudio) -> list[SoundDevice]:
    """Every device PortAudio knows."""
    devices = []
    for index in range(audio.get_device_count()):
        info = audio.get_device_info_by_index(index)
        devices.append(SoundDevice(index, str(info["name"]), int(info["maxInputChannels"]),
                                   int(info["maxOutputChannels"]),
                                   float(info["defaultSampleRate"])))
    return devices


def find_device(audio: pyaudio.PyAudio, wanted: str, direction: str) -> int | None:
    """Index of the device `wanted` (index or name substring); None for "" (the default)."""
    wanted = wanted.strip()
    if not wanted:
        return None
    usable = [d for d in list_devices(audio) if d.channels(direction) > 0]
    if wanted.isdigit():
        matches = [d for d in usable if d.index == int(wanted)]
    else:
        matches = [d for d in usable if wanted.lower() in d.name.lower()]
    if not matches:
        listing = "; ".join(f"{d.index}: {d.name!r} ({d.channels(direction)} ch)"
                            for d in usable) or "none"
        raise ConfigError(f"parameter sound_device = {wanted!r} names no {direction} device: "
                          f"expected an index or a name substring of one of: {listing}")
    return matches[0].index
