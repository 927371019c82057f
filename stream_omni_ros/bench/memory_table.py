"""`stream-omni-ros memory`: device memory per part and setting, and which GPU fits which setting.

    stream-omni-ros memory [--max-input-len 2048] [--max-new-tokens 512] [--max-new-units 2048]
                           [--history-tokens 2048] [--image-size 640x480] [--no-speech]

Computed from the real Stream-Omni-8B shapes on the meta device (stream_omni_ros.model.memory);
nothing is downloaded or allocated. The README quotes this command's output.
"""
from __future__ import annotations

import argparse
import sys

from stream_omni_ros.engine.config import ConversationConfig
from stream_omni_ros.engine.runtime_config import CosyVoiceConfig, GenerationSettings, ModelConfig
from stream_omni_ros.model import memory
from stream_omni_ros.model.config import StreamOmniConfig
from stream_omni_ros.model.random_weights import full_config

SETTINGS = (memory.Setting("bf16"), memory.Setting("bf16", "8bit"),
            memory.Setting("bf16", "4bit"))
# (device, GiB usable by the assistant): Jetson modules share their memory with the OS, ROS and
# the camera pipeline (about 1.5 GiB kept for those); desktop cards keep about 0.5 GiB for the
# display and driver.
DEVICES = (("Jetson Orin Nano 8 GB", 6.5), ("Jetson Orin NX 16 GB", 14.5),
           ("Jetson AGX Orin 32 GB", 30.5), ("Jetson AGX Orin 64 GB", 62.5),
           ("12 GB desktop card (RTX 3060, 4070)", 11.5),
           ("16 GB desktop card (RTX 4060 Ti 16 GB, 4080)", 15.5),
           ("24 GB desktop card (RTX 3090, 4090)", 23.5), ("L40S / RTX 6000 Ada 48 GB", 47.5),
           ("A100 / H100 80 GB", 79.5))


def build_parser() -> argparse.ArgumentParser:
    """Options of the memory command (defaults: the node's parameter defaults)."""
    generation = GenerationSettings()
    parser = argparse.ArgumentParser(prog="stream-omni-ros memory",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--max-input-len", type=int, default=ModelConfig().max_input_len)
    parser.add_argument("--max-new-tokens", type=int, default=generation.max_new_tokens)
    parser.add_argument("--max-new-units", type=int, default=generation.max_new_units)
    parser.add_argument("--history-tokens", type=int,
                        default=ConversationConfig().max_history_tokens)
    parser.add_argument("--image-size", type=image_size, default=None,
                        help="camera WIDTHxHEIGHT (default: the largest image tokens)")
    parser.add_argument("--no-speech", dest="speech", action="store_false",
                        help="speech.enabled false: no vocoder, no speech-out caches")
    return parser


def image_size(value: str) -> tuple[int, int]:
    """'640x480' -> (640, 480)."""
    try:
        width, height = (int(part) for part in value.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--image-size {value!r}: expected WIDTHxHEIGHT, "
                                         "e.g. 640x480") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"--image-size {value!r}: expected positive sizes")
    return width, height


def tables(args: argparse.Namespace) -> str:
    """The per-part table and the fit table, as Markdown."""
    config = StreamOmniConfig.from_dict(full_config(vision=True))
    model = memory.meta_model(config)
    context = memory.turn_context(model, args.max_input_len, args.max_new_tokens,
                                  args.max_new_units, args.history_tokens,
                                  CosyVoiceConfig().dtype, args.speech, args.image_size)
    columns = {s.label: memory.estimate(config, context, s, model) for s in SETTINGS}
    lines = [f"Stream-Omni-8B with vision; max_input_len {args.max_input_len}, "
             f"max_new_tokens {args.max_new_tokens}, max_new_units {args.max_new_units},",
             f"history {args.history_tokens} tokens, image "
             f"{memory.image_tokens(model, args.image_size)} tokens, speech out "
             f"{'on' if args.speech else 'off'}; sizes in GiB", "",
             "| part | parameters | " + " | ".join(columns) + " |",
             "| --- | ---: | " + " | ".join("---:" for _ in columns) + " |"]
    for index, row in enumerate(next(iter(columns.values()))):
        cells = [f"{rows[index].bytes / memory.GIB:.2f}" for rows in columns.values()]
        params = f"{row.params / 1e9:.3f} B" if row.params else ""
        lines.append(f"| {row.name} | {params} | " + " | ".join(cells) + " |")
    lines += ["", "| device (GiB usable) | " + " | ".join(columns) + " |",
              "| --- | " + " | ".join("---" for _ in columns) + " |"]
    totals = {label: rows[-1].bytes / memory.GIB for label, rows in columns.items()}
    for device, usable in DEVICES:
        cells = ["fits" if total <= usable else "no" for total in totals.values()]
        lines.append(f"| {device} ({usable}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print both tables."""
    print(tables(build_parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
