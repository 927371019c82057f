"""CUDA paths on the tiny parts: the model, the generator, the vocoder and the speech tokenizer.

Skipped without CUDA. They need no ROS, soundfile or espeak-ng, so that `scripts/gpu_bench.sh
checks` runs them on a bare GPU image.
"""
import numpy as np
import pytest
import torch

from stream_omni_ros.model.checkpoint import LoadOptions, load_stream_omni
from stream_omni_ros.model.events import GenerationEnd, SpeechUnits, TextDelta
from stream_omni_ros.model.generation import StreamOmniGenerator
from stream_omni_ros.model.request import SPEECH_IN, GenerationConfig, GenerationRequest
from stream_omni_ros.model.speech_tokenizer import SpeechTokenizer, providers_for_device
from stream_omni_ros.model.tiny_checkpoint import write_tiny_checkpoint
from stream_omni_ros.model.tiny_speech_tokenizer import write_tiny_speech_tokenizer
from stream_omni_ros.vocoder.cosyvoice import CosyVoiceVocoder, VocoderOptions
from stream_omni_ros.vocoder.streaming import StreamingSynthesizer
from stream_omni_ros.vocoder.tiny_cosyvoice import write_tiny_cosyvoice

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
CONFIG = GenerationConfig(max_new_tokens=10, max_new_units=20, mask_units=True,
                          ignore_stop_ids=True)
UNITS = [3, 3, 7, 1, 0, 31, 12, 12, 5]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny_cuda"), variant="anyres")


def load(checkpoint, device: str, dtype: str):
    return load_stream_omni(str(checkpoint), LoadOptions(device=device, dtype=dtype,
                                                         local_files_only=True))


@torch.inference_mode()
def step_logits(model) -> tuple[torch.Tensor, torch.Tensor]:
    """Text logits after a short prefill and unit logits after one unit step, on the CPU."""
    device = model.device
    caches = model.new_caches(16, 16)
    ids = torch.arange(1, 9, device=device)[None]
    text = model.text_logits(model.llm_forward(model.embed_text(ids), caches.llm))
    window = (torch.zeros(1, 5, dtype=torch.long, device=device), torch.arange(5, device=device))
    unit_h = model.top_forward(model.bottom_forward(ids[:, :1], caches.bottom), caches.top,
                               *window)
    return text[0, -1].float().cpu(), model.unit_logits(unit_h)[0, -1].float().cpu()


def test_cuda_logits_equal_cpu_logits(checkpoint):
    torch.backends.cuda.matmul.allow_tf32 = False  # compare fp32 with fp32
    for on_cpu, on_cuda in zip(step_logits(load(checkpoint, "cpu", "fp32").model),
                               step_logits(load(checkpoint, "cuda", "fp32").model)):
        torch.testing.assert_close(on_cuda, on_cpu, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_every_kind_generates_its_fixed_lengths_on_cuda(checkpoint, dtype):
    generator = StreamOmniGenerator(load(checkpoint, "cuda", dtype))
    for kind in ("text_to_text", "text_to_speech", "speech_to_text", "speech_to_speech"):
        content = {"units": UNITS} if kind in SPEECH_IN else {"text": "What is this?"}
        events = list(generator.generate(GenerationRequest(kind, config=CONFIG, **content)))
        end = events[-1]
        units = [u for e in events if isinstance(e, SpeechUnits) for u in e.units]
        assert isinstance(end, GenerationEnd) and len(units) == end.n_units, kind
        if kind.endswith("speech"):  # speech out ends with its units; text runs alongside
            assert end.n_units == CONFIG.max_new_units, kind
            assert 1 <= end.n_text_tokens <= CONFIG.max_new_tokens, kind
        else:
            assert (end.n_units, end.n_text_tokens) == (0, CONFIG.max_new_tokens), kind
        assert any(isinstance(e, TextDelta) for e in events), kind


def test_vocoder_streams_on_cuda_like_offline(tmp_path):
    vocoder = CosyVoiceVocoder.load(write_tiny_cosyvoice(tmp_path),
                                    VocoderOptions(device="cuda", n_timesteps=2))
    units = np.random.default_rng(7).integers(0, 32, 90).tolist()
    offline = vocoder.synthesize(units)
    stream = StreamingSynthesizer(vocoder)
    chunks = [chunk for unit in units for chunk in stream.push([unit])] + list(stream.flush())
    streamed = np.concatenate(chunks)
    assert len(streamed) == len(offline) and np.isfinite(streamed).all()
    assert np.corrcoef(offline[2048:-2048], streamed[2048:-2048])[0, 1] > 0.9


def test_speech_tokenizer_on_cuda_providers_gives_cpu_units(tmp_path):
    onnx_path = write_tiny_speech_tokenizer(tmp_path)
    speech = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    on_cpu = SpeechTokenizer(onnx_path, ["CPUExecutionProvider"]).waveform_to_units(speech)
    on_cuda = SpeechTokenizer(onnx_path, providers_for_device("cuda")).waveform_to_units(speech)
    assert list(on_cuda) == list(on_cpu) and len(on_cpu) > 0
