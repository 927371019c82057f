"""`stream-omni-ros` command line: the demo, one-process bringup and the environment check.

Sub-commands import their dependencies lazily so that a GPU box without ROS can still run the
model-only commands.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from stream_omni_ros.errors import StreamOmniError


def run_check(args: argparse.Namespace) -> int:
    """Prove the ROS environment: espeak speech through two node processes over DDS."""
    from stream_omni_ros.apps.loopback_check import run_audio_loopback

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


def run_demo(args: argparse.Namespace) -> int:
    """The main demo: a spoken question about a camera image, answered by omni_node."""
    from stream_omni_ros.apps.demo import DemoConfig, run_demo as run

    given = {"question": args.question, "out_dir": args.out, "model_path": args.model_path,
             "cosyvoice_path": args.cosyvoice_path, "device": args.device,
             "dtype": args.dtype, "params_file": args.params_file,
             "load_timeout_s": args.load_timeout, "answer_timeout_s": args.answer_timeout}
    # Unset options keep DemoConfig's defaults (written only there).
    return run(DemoConfig(**{name: value for name, value in given.items() if value is not None}))


def add_demo_arguments(demo: argparse.ArgumentParser) -> None:
    """Options of `stream-omni-ros demo` (defaults: stream_omni_ros.apps.demo.DemoConfig)."""
    demo.add_argument("--question", help="the question espeak-ng speaks")
    demo.add_argument("--out", type=Path, help="folder for the question, scene, answer WAV "
                                               "and log (default ./demo_out)")
    demo.add_argument("--model-path", help="Stream-Omni checkpoint folder (default: tiny "
                                           "random weights, meaningless words)")
    demo.add_argument("--cosyvoice-path", help="CosyVoice-300M-25Hz folder")
    demo.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    demo.add_argument("--dtype", help="auto (default: bf16 on cuda, fp32 on cpu), bf16, fp16, "
                                      "fp32")
    demo.add_argument("--params-file", type=Path, help="params YAML (default: the package's "
                                                       "config/stream_omni.yaml)")
    demo.add_argument("--load-timeout", type=float, help="seconds to wait for the model")
    demo.add_argument("--answer-timeout", type=float,
                      help="seconds to wait for the answer after the question")
    demo.set_defaults(func=run_demo)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="stream-omni-ros", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="prove the ROS 2 environment with an audio loopback")
    check.add_argument("--text", default="Hello robot, what do you see on the table?")
    check.add_argument("--workdir", default=None, help="folder for the WAV files")
    check.set_defaults(func=run_check)
    add_demo_arguments(sub.add_parser(
        "demo", help="ask the robot a spoken question about an image and check the answer"))
    # Listed for --help only: main() hands `bringup ...` to apps/bringup.py, which parses it.
    sub.add_parser("bringup", add_help=False,
                   help="start the launch file's nodes in one process (see bringup --help)")
    sub.add_parser("bench", add_help=False,
                   help="latency/throughput benchmark with same-run baselines (see bench --help)")
    sub.add_parser("memory", add_help=False,
                   help="device memory per part and setting, and which GPU fits (see memory "
                        "--help)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `stream-omni-ros` and `python -m stream_omni_ros.cli`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bringup"]:
        from stream_omni_ros.apps.bringup import main as bringup_main

        return bringup_main(argv[1:])
    if argv[:1] == ["bench"]:  # no rclpy needed: runs on GPU machines without ROS
        from stream_omni_ros.bench.__main__ import main as bench_main

        return bench_main(argv[1:])
    if argv[:1] == ["memory"]:
        from stream_omni_ros.bench.memory_table import main as memory_main

        return memory_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except StreamOmniError as error:
        print(f"stream-omni-ros {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
