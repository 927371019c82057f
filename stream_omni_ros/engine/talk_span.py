"""Push-to-talk spans: press and release times placed on the audio timeline by sample stamps.

Audio reaches the engine later than the button presses that delimit it. A span keeps the press
and release on the caller's clock and maps them onto the 16 kHz timeline once audio shows
which clock its stamps follow; audio without usable stamps is delimited by arrival instead.
"""
from __future__ import annotations

from dataclasses import dataclass

from stream_omni_ros.engine.audio_input import AudioFrontEnd
from stream_omni_ros.model.speech_tokenizer import MODEL_SAMPLE_RATE


@dataclass
class TalkSpan:
    """One push-to-talk utterance: press and release (caller's clock) and how to place them."""

    press_stamp: float
    release_stamp: float | None = None  # None while the button is held
    by_stamps: bool | None = None  # None until audio after the press has been seen
    arrival_end: int | None = None  # timeline index at the release (end when by arrival)

    @property
    def held(self) -> bool:
        """The button is still pressed."""
        return self.release_stamp is None

    def place(self, front_end: AudioFrontEnd, first_sample: int, end_sample: int,
              wait_s: float) -> tuple[int, str]:
        """Decide from audio [first_sample, end_sample) how to delimit; return the start sample.

        The note is non-empty when the audio's stamps lie too far from the press to follow the
        same clock (a bag replayed without simulation time, a microphone on another clock).
        """
        end_stamp = front_end.sample_to_stamp(end_sample)
        if end_stamp is None:  # a source without stamps: arrival order is all there is
            self.by_stamps = False
            return first_sample, ""
        offset = end_stamp - self.press_stamp
        if abs(offset) > wait_s + (end_sample - first_sample) / MODEL_SAMPLE_RATE:
            self.by_stamps = False
            return first_sample, (
                f"audio/in stamps are {offset:+.3f} s from the push-to-talk press, more than "
                f"listen.late_audio_wait_s = {wait_s} s: the utterance is delimited by arrival")
        self.by_stamps = True
        return max(first_sample, front_end.stamp_to_sample(self.press_stamp)), ""

    def end_sample(self, front_end: AudioFrontEnd) -> int | None:
        """Timeline index the utterance ends at; None while held or not placed yet."""
        if self.held or self.by_stamps is None:
            return None
        if self.by_stamps:
            end = front_end.stamp_to_sample(self.release_stamp)
            if end is not None:
                return end
        return self.arrival_end
