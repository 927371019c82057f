"""Stream-Omni in pure PyTorch: config, Llama blocks, checkpoint loading, vision, generation.

Import the submodules directly (e.g. ``stream_omni_ros.model.checkpoint``); this package file stays
empty so importing one part does not pull in the others.
"""
