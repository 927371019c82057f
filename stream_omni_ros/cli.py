"""`stream-omni-ros` command line: the demo and the environment check.

Sub-commands import their dependencies lazily so that a GPU box without ROS can still run the
model-only commands.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def run_check(args: argparse.Namespace) -> int:
    """Prove the ROS environment: espeak speech through two node processes over DDS."""
    from stream_omni_ros.nodes.loopback_check import run_audio_loopback

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="stream_omni_check_"))
    workdir.mkdir(parents=True, exist_ok=True)
    result = run_audio_loopback(workdir, args.text)
    print(f"sent {result.sent_samples} samples, received {result.received_samples} "
          f"in {result.wall_s:.1f} s (files under {workdir})")
    if not result.identical:
        print("FAILED: the audio received by audio_sink_node differs from what wav_source_node "
              "published", file=sys.stderr)
        return 1
    print("OK: wav_source_node -> Fast DDS -> audio_sink_node delivered the audio unchanged")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="stream-omni-ros", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="prove the ROS 2 environment with an audio loopback")
    check.add_argument("--text", default="Hello robot, what do you see on the table?")
    check.add_argument("--workdir", default=None, help="folder for the WAV files")
    check.set_defaults(func=run_check)
    demo = sub.add_parser("demo", help="the main demo (for now: the environment check)")
    demo.add_argument("--text", default="Hello robot, what do you see on the table?")
    demo.add_argument("--workdir", default=None, help="folder for the WAV files")
    demo.set_defaults(func=run_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `stream-omni-ros` and `python -m stream_omni_ros.cli`."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
