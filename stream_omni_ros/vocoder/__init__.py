"""CosyVoice-300M-25Hz unit vocoder: flow matching (units -> mel) + HiFT (mel -> 22050 Hz PCM).

Pure PyTorch; no ROS, no logging to stdout, no device chosen here (see VocoderOptions.device).
"""
from .cosyvoice import CosyVoiceVocoder, VocoderOptions
from .flow import Flow, FlowConfig, tiny_flow_config
from .hift import HiFTGenerator, HiftConfig, tiny_hift_config
from .hparams import read_cosyvoice_yaml
from .streaming import StreamingConfig, StreamingSynthesizer
from .tiny_cosyvoice import write_tiny_cosyvoice

__all__ = [
    "CosyVoiceVocoder", "VocoderOptions", "Flow", "FlowConfig", "tiny_flow_config",
    "HiFTGenerator", "HiftConfig", "tiny_hift_config", "read_cosyvoice_yaml",
    "StreamingConfig", "StreamingSynthesizer", "write_tiny_cosyvoice",
]
