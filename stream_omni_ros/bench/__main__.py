"""Benchmark spoken turns: latency, throughput and same-run baselines, as JSON, Markdown, PNG.

`python -m stream_omni_ros.bench` or `stream-omni-ros bench`; outputs go into --out:

    python -m stream_omni_ros.bench --size tiny --turns 5 --out bench_out
    python -m stream_omni_ros.bench --size full --turns 20 --out bench_h100   # CUDA only
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from stream_omni_ros.bench.config import DEVICES, DTYPES, SIZES, BenchConfig
from stream_omni_ros.bench.engine_run import fixed_generation, model_responder, run_engine_turns
from stream_omni_ros.bench.inputs import camera_frame, recorded_questions, spoken_questions
from stream_omni_ros.bench.messages import message_costs
from stream_omni_ros.bench.parts import BenchParts, build_parts
from stream_omni_ros.bench.records import TurnRecord, summarize
from stream_omni_ros.bench.reference import run_reference_turn
from stream_omni_ros.bench.report import BenchResult, markdown, write_outputs
from stream_omni_ros.bench.targets import evaluate_targets
from stream_omni_ros.bench.throughput import model_steps, vocoder_rtf
from stream_omni_ros.errors import StreamOmniError

DEFAULTS = BenchConfig()
STARTED = time.perf_counter()


def progress(message: str) -> None:
    """One line on stderr per phase, so that a run cut off by a time limit shows where it was."""
    print(f"[bench {time.perf_counter() - STARTED:7.1f} s] {message}", file=sys.stderr,
          flush=True)


def build_parser() -> argparse.ArgumentParser:
    """Options of the bench command (defaults from BenchConfig)."""
    parser = argparse.ArgumentParser(prog="stream-omni-ros bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", dest="out_dir", default=DEFAULTS.out_dir, help="output folder")
    parser.add_argument("--size", default=DEFAULTS.size, choices=SIZES)
    parser.add_argument("--device", default=DEFAULTS.device, choices=DEVICES,
                        help="default: cuda for full, cpu for tiny")
    parser.add_argument("--dtype", default=DEFAULTS.dtype, choices=DTYPES,
                        help="default: bf16 for full, fp32 for tiny")
    parser.add_argument("--vocoder-dtype", default=DEFAULTS.vocoder_dtype, choices=DTYPES,
                        help="flow and HiFT precision; default: cosyvoice.dtype as deployed")
    for name, help_text in (("turns", "spoken turns"), ("text_tokens", "text tokens per answer"),
                            ("units", "speech units per answer (25 per second)"),
                            ("vocoder_steps", "flow-matching steps"),
                            ("step_repeats", "repeats of step timings"),
                            ("step_prompt_len", "LLM positions before timed steps"),
                            ("message_repeats", "repeats of message costs"),
                            ("seed", "random seed"),
                            ("layers", "full size: layers kept per stack, 0 = all (N > 0 "
                                       "rehearses the full-size paths on a CPU)")):
        parser.add_argument("--" + name.replace("_", "-"), type=int,
                            default=getattr(DEFAULTS, name), help=help_text)
    parser.add_argument("--pace", type=float, default=DEFAULTS.pace,
                        help="microphone speed: 1 = real time, 0 = as fast as possible")
    parser.add_argument("--frame-at", default=DEFAULTS.frame_at,
                        choices=("speech_start", "utterance_end"),
                        help="camera frame of a spoken turn (engine image.frame_at)")
    parser.add_argument("--questions-from", default=DEFAULTS.questions_from,
                        help="folder of spoken questions NN.wav (+ NN.txt) recorded earlier, for "
                             "machines without espeak-ng (see scripts/gpu_kit.sh)")
    parser.add_argument("--no-compile", dest="compile_decode", action="store_false",
                        help="eager decode steps on CUDA (default: compiled static steps)")
    parser.add_argument("--no-ros", dest="ros", action="store_false",
                        help="skip the ROS pass-through part")
    return parser


def parse_config(argv: list[str] | None) -> BenchConfig:
    """BenchConfig from command-line arguments."""
    args = vars(build_parser().parse_args(argv))
    return BenchConfig(**args)


def run_turns(parts: BenchParts, config: BenchConfig, questions: list, image: np.ndarray
              ) -> dict[str, list[TurnRecord]]:
    """Reference-style turns (a) and engine turns on the same questions and image."""
    generation = fixed_generation(config)
    progress("reference pipeline (a): warm-up turn")
    run_reference_turn(parts, generation, questions[0][1], image, -1)  # warm-up, not counted
    reference = []
    for n, (_, speech) in enumerate(questions):
        progress(f"reference pipeline (a): turn {n + 1}/{len(questions)}")
        reference.append(run_reference_turn(parts, generation, speech, image, n))
    progress(f"engine: {len(questions)} turns at pace {config.pace}")
    engine = run_engine_turns(model_responder(parts, config), config, questions, image)
    return {"reference": reference, "engine": engine}


def run_ros_part(config: BenchConfig, questions: list, image: np.ndarray,
                 records: dict[str, list[TurnRecord]]) -> dict[str, float]:
    """ROS overhead against direct engine calls, both with a pass-through model; {} if no ROS."""
    if not config.ros:
        return {}
    try:
        from stream_omni_ros.bench.ros_overhead import ros_overhead  # the rclpy side
    except ImportError:  # no ROS 2 here (GPU boxes): the engine figures stand alone
        return {}
    figures, passthrough = ros_overhead(config, questions, image)
    records.update(passthrough)
    return figures


def run_bench(config: BenchConfig) -> BenchResult:
    """Every measurement of one run."""
    with tempfile.TemporaryDirectory(prefix="stream_omni_bench_") as folder:
        progress(f"building {config.size} parts on {config.model_device} "
                 f"({config.model_dtype}, layers {config.layers or 'all'})")
        parts = build_parts(config, Path(folder))
        questions = (recorded_questions(Path(config.questions_from), config.turns)
                     if config.questions_from else spoken_questions(config.turns))
        image = camera_frame(config.image_width, config.image_height, config.seed)
        progress("model steps and baselines (b), (c)")
        steps = model_steps(parts, config)
        progress("vocoder real-time factors")
        vocoder = vocoder_rtf(parts, config)
        progress("cost per message")
        messages = message_costs(parts, config, image)
        records = run_turns(parts, config, questions, image)
    progress("ROS pass-through part" if config.ros else "ROS part skipped (--no-ros)")
    ros = run_ros_part(config, questions, image, records)
    engine_total = summarize(records["engine"])["total_s"].p50
    if ros and engine_total:
        ros["overhead_fraction_of_model_compute"] = ros["overhead_per_turn_s"] / engine_total
    targets = evaluate_targets(summarize(records["engine"]), summarize(records["reference"]),
                               steps, ros.get("overhead_fraction_of_model_compute"),
                               parts.device_name)
    return BenchResult(config, parts.device_name, records, steps, vocoder, messages, ros,
                       targets)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, write its outputs, print the Markdown report; 1 on a clear error."""
    try:
        config = parse_config(argv)
        result = run_bench(config)
    except StreamOmniError as error:
        print(f"stream-omni-ros bench: {error}", file=sys.stderr)
        return 1
    paths = write_outputs(result, Path(config.out_dir))
    print(markdown(result))
    print("\n".join(f"wrote {path}" for path in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
