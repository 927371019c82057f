"""Speech in: 16 kHz waveform -> Whisper-style 128-bin log-mel -> CosyVoice S3 units (25 Hz)."""
from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stream_omni_ros.errors import CheckpointError, ConfigError, InputError

# torch and onnxruntime load where they are used: the engine and the nodes import the model's
# sample rate from here without loading them.
if TYPE_CHECKING:
    import onnxruntime
    import torch

LOG = logging.getLogger(__name__)
Provider = str | tuple[str, dict]  # a name, or a name with its provider options


def provider_name(provider: Provider) -> str:
    """The name of an onnxruntime provider given with or without options."""
    return provider if isinstance(provider, str) else provider[0]

# The model's audio rate, defined here only: the engine, nodes and benchmarks import it.
MODEL_SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
N_MELS = 128
BLOCK_SAMPLES = 30 * MODEL_SAMPLE_RATE  # the tokenizer accepts at most 30 s per call
# Centred reflect padding of n_fft // 2 = 200 samples needs a longer signal than that.
MIN_BLOCK_SAMPLES = N_FFT // 2 + 1
EXPECTED_UNITS_PER_SECOND = 25.0


def _hz_to_slaney_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    f_sp = 200.0 / 3
    min_log_mel = 1000.0 / f_sp
    log_step = np.log(6.4) / 27.0
    mel = hz / f_sp
    above = hz >= 1000.0
    mel[above] = min_log_mel + np.log(hz[above] / 1000.0) / log_step
    return mel


def _slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of `_hz_to_slaney_mel`."""
    f_sp = 200.0 / 3
    min_log_mel = 1000.0 / f_sp
    log_step = np.log(6.4) / 27.0
    hz = mel * f_sp
    above = mel >= min_log_mel
    hz[above] = 1000.0 * np.exp(log_step * (mel[above] - min_log_mel))
    return hz


@functools.lru_cache(maxsize=4)
def slaney_mel_filterbank(
    n_mels: int = N_MELS,
    n_fft: int = N_FFT,
    sample_rate: int = MODEL_SAMPLE_RATE,
    f_max: float | None = None,
) -> np.ndarray:
    """Triangular mel filters [n_mels, n_fft // 2 + 1], area-normalised (librosa norm=slaney)."""
    top = sample_rate / 2 if f_max is None else f_max
    fft_hz = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    edge_mels = np.linspace(0.0, _hz_to_slaney_mel(np.array([top]))[0], n_mels + 2)
    edge_hz = _slaney_mel_to_hz(edge_mels)
    widths = np.diff(edge_hz)
    ramps = edge_hz[:, None] - fft_hz[None, :]  # [n_mels + 2, bins]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    # Round to float32 before and after the normalisation, as librosa (whisper's source) does.
    filters = np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)
    area_norm = 2.0 / (edge_hz[2:] - edge_hz[:-2])
    filters = (filters.astype(np.float64) * area_norm[:, None]).astype(np.float32)
    filters.flags.writeable = False  # shared through the cache
    return filters


@functools.lru_cache(maxsize=1)
def _filterbank_tensor() -> torch.Tensor:
    """Whisper's 128-bin filterbank as a CPU tensor, built once."""
    import torch
    return torch.from_numpy(slaney_mel_filterbank().copy())


def check_waveform(wave_16k: object) -> np.ndarray:
    """Return the waveform as float32 1-D if it is a valid mono signal, else raise InputError."""
    if not isinstance(wave_16k, np.ndarray):
        raise InputError(
            f"waveform is a {type(wave_16k).__name__}: expected a 1-D float numpy array")
    if wave_16k.ndim != 1:
        raise InputError(
            f"waveform has shape {wave_16k.shape}: expected 1-D mono samples at 16 kHz")
    if wave_16k.dtype not in (np.float32, np.float64):
        raise InputError(f"waveform has dtype {wave_16k.dtype}: expected float32 or float64")
    if wave_16k.size == 0:
        raise InputError("waveform is empty: expected at least one sample")
    if not np.isfinite(wave_16k).all():
        raise InputError("waveform contains NaN or inf samples: expected finite values")
    return wave_16k.astype(np.float32, copy=False)


def log_mel_128(wave_16k: np.ndarray) -> np.ndarray:
    """Whisper's log-mel of a 16 kHz waveform -> float32 [128, samples // 160]."""
    wave = check_waveform(wave_16k)
    if wave.size < MIN_BLOCK_SAMPLES:
        raise InputError(
            f"waveform has {wave.size} samples: the log-mel needs at least {MIN_BLOCK_SAMPLES}")
    import torch
    with torch.inference_mode():
        samples = torch.from_numpy(np.ascontiguousarray(wave))
        window = torch.hann_window(N_FFT)  # periodic
        spectrum = torch.stft(samples, N_FFT, HOP_LENGTH, window=window, center=True,
                              pad_mode="reflect", return_complex=True)
        power = spectrum[:, :-1].abs() ** 2  # [bins, frames]; the last frame is dropped
        mel = _filterbank_tensor() @ power
        log_mel = torch.clamp(mel, min=1e-10).log10()
        log_mel = torch.maximum(log_mel, log_mel.max() - 8.0)
        return ((log_mel + 4.0) / 4.0).numpy()


def units_for_frames(num_frames: int) -> int:
    """Units the 25 Hz tokenizer emits for `num_frames` mel frames (two stride-2 convs)."""
    return ((num_frames - 1) // 2 + 1 - 1) // 2 + 1


def units_for_samples(num_samples: int) -> int:
    """Units `SpeechTokenizer.waveform_to_units` returns for a waveform of `num_samples`."""
    total = 0
    for start in range(0, num_samples, BLOCK_SAMPLES):
        block = max(min(BLOCK_SAMPLES, num_samples - start), MIN_BLOCK_SAMPLES)
        total += units_for_frames(block // HOP_LENGTH)
    return total


def _open_session(path: Path, providers: list[Provider]) -> onnxruntime.InferenceSession:
    """An onnxruntime session that really runs on one of the requested providers."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        with warnings.catch_warnings():  # a missing provider is checked (and raised) below
            warnings.simplefilter("ignore")
            session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=providers)
    except Exception as error:  # onnxruntime raises several unrelated types
        raise CheckpointError(f"speech tokenizer {path} could not be loaded: {error}") from error
    names = [provider_name(p) for p in providers]
    running = session.get_providers()
    if not set(running) & set(names):
        raise ConfigError(
            f"speech tokenizer providers {names} are not available here; onnxruntime"
            f" offers {onnxruntime.get_available_providers()}")
    if names[0] not in running:  # e.g. a CUDA provider whose libraries failed to load
        LOG.warning("speech tokenizer asked for %s but runs on %s", names[0], running)
    return session


def providers_for_device(device: str) -> list[Provider]:
    """onnxruntime providers for a torch device name: CUDA first where it is available."""
    import onnxruntime
    available = onnxruntime.get_available_providers()
    if device.startswith("cuda") and "CUDAExecutionProvider" in available:
        import torch
        index = torch.device(device).index or 0
        # Heuristic convolution choice: the exhaustive search reruns for every new input
        # length, and partial transcripts bring a new length every time.
        options = {"device_id": index, "cudnn_conv_algo_search": "HEURISTIC"}
        return [("CUDAExecutionProvider", options), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class SpeechTokenizer:
    """CosyVoice `speech_tokenizer_v1.onnx` run with onnxruntime on the caller's providers."""

    def __init__(self, onnx_path: str | Path,
                 providers: Sequence[Provider] | None = None) -> None:
        self.onnx_path = Path(onnx_path)
        if not self.onnx_path.is_file():
            raise CheckpointError(
                f"speech tokenizer {self.onnx_path} does not exist: expected"
                " speech_tokenizer_v1.onnx from the CosyVoice-300M-25Hz folder")
        self._session = _open_session(self.onnx_path, list(providers or ["CPUExecutionProvider"]))
        self.providers = tuple(self._session.get_providers())
        self._input_names = [node.name for node in self._session.get_inputs()]
        if len(self._input_names) != 2:
            raise CheckpointError(
                f"speech tokenizer {self.onnx_path} has inputs {self._input_names}: expected"
                " two (mel [1, 128, F] float32, length [1] int32)")

    def waveform_to_units(self, wave_16k: np.ndarray) -> np.ndarray:
        """16 kHz mono waveform -> unit ids int64, in consecutive blocks of at most 30 s."""
        wave = check_waveform(wave_16k)
        blocks = [wave[start:start + BLOCK_SAMPLES]
                  for start in range(0, wave.size, BLOCK_SAMPLES)]
        return np.concatenate([self._block_to_units(block) for block in blocks])

    def _block_to_units(self, block: np.ndarray) -> np.ndarray:
        """Units of one block of at most 30 s (a very short block is zero-padded first)."""
        if block.size < MIN_BLOCK_SAMPLES:
            block = np.pad(block, (0, MIN_BLOCK_SAMPLES - block.size))
        mel = log_mel_128(block)
        feeds = {self._input_names[0]: mel[None],
                 self._input_names[1]: np.array([mel.shape[1]], dtype=np.int32)}
        units = self._session.run(None, feeds)[0]
        return np.asarray(units).reshape(-1).astype(np.int64, copy=False)

    def units_per_second(self, duration_s: float = 2.0) -> float:
        """Units per second the model emits on a `duration_s` test tone (25 for the right file)."""
        samples = int(duration_s * MODEL_SAMPLE_RATE)
        times = np.arange(samples, dtype=np.float64) / MODEL_SAMPLE_RATE
        tone = (0.1 * np.sin(2 * np.pi * 220.0 * times)).astype(np.float32)
        return self.waveform_to_units(tone).size / duration_s

    def check_units_per_second(
        self, expected: float = EXPECTED_UNITS_PER_SECOND, tolerance: float = 0.1
    ) -> float:
        """Measured units/s; CheckpointError if it is off `expected` by more than `tolerance`."""
        measured = self.units_per_second()
        if abs(measured - expected) > tolerance * expected:
            raise CheckpointError(
                f"speech tokenizer {self.onnx_path} emits {measured:.1f} units/s: expected"
                f" {expected:.0f} (the CosyVoice-300M-25Hz file, not the 50 Hz one)")
        return measured
