"""Opt-in static-shape single-position steps of the three stacks, optionally torch.compile'd.

A decode step normally slices the KV cache to its current length, so every step has new shapes.
Here one position is written at a device-side index and attention spans the whole preallocated
cache under a position mask: the step graph is the same at every position, which lets
`torch.compile` (CUDA graphs with mode "reduce-overhead") replay it. Prefills (T > 1) stay eager.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from stream_omni_ros.errors import ConfigError
from stream_omni_ros.model.llama import KVCache, StaticStep, rope_cos_sin
from stream_omni_ros.model.stream_omni import StreamCaches, StreamOmniForCausalLM

POOLED_PER_SHAPE = 2  # a running turn and the next, prepared one
# Graphs per step function: the top step has one per text-window width (1..5) and speech-cache
# capacity, the others one per capacity. Dynamo's default limit (8) ends a long conversation
# with a hard error under fullgraph=True.
RECOMPILE_LIMIT = 64
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class CompiledDecodeConfig:
    """Settings of the static-shape decode steps (used only when a generator is given one)."""

    compile: bool = True  # False runs the same static-shape steps eagerly
    mode: str | None = None  # None: "reduce-overhead" (CUDA graphs) on CUDA, "default" elsewhere
    backend: str = "inductor"  # "aot_eager" traces the same graph without generating code
    speech_steps: bool = True  # also the bottom/top single-unit steps, not only the LLM's
    # Cache capacities are rounded up to a multiple of this: each distinct capacity is one
    # more compiled graph (dynamo's recompile limit is 8 per step function).
    capacity_multiple: int = 1024

    def __post_init__(self) -> None:
        if self.mode is not None and self.mode not in COMPILE_MODES:
            raise ConfigError(f"CompiledDecodeConfig.mode={self.mode!r}; expected None or one "
                              f"of {COMPILE_MODES}")
        if self.capacity_multiple < 1:
            raise ConfigError(f"CompiledDecodeConfig.capacity_multiple="
                              f"{self.capacity_multiple}; expected >= 1")


def round_up(length: int, multiple: int) -> int:
    """Smallest multiple of `multiple` that is >= length (and >= multiple)."""
    return max(1, -(-length // multiple)) * multiple


def stack_step(layers: nn.ModuleList, x: torch.Tensor, kv: torch.Tensor,
               position: torch.Tensor, inv_freq: torch.Tensor,
               cross: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """One position x [1, 1, H] through a stack, writing kv at `position` [1] -> [1, 1, H].

    `cross` = (window embeddings [1, W, H], window positions [W]) for the top stack.
    """
    step = StaticStep(kv, position)
    rope = rope_cos_sin(position, inv_freq, x.dtype)
    extra = ()
    if cross is not None:
        text, window_positions = cross
        extra = ((text, rope, rope_cos_sin(window_positions, inv_freq, x.dtype)),)
    for index, layer in enumerate(layers):
        x = layer(x, rope, step, index, position, *extra)
    return x


class StaticDecoder:
    """The model's stage methods, with single-position calls routed to static-shape steps.

    `llm_forward`, `bottom_forward`, `top_forward` and `new_caches` take the arguments of the
    StreamOmniForCausalLM methods of the same names, so the generator can use either.
    """

    def __init__(self, model: StreamOmniForCausalLM, config: CompiledDecodeConfig) -> None:
        self.model, self.config = model, config
        self._inv_freq = model.rotary.inv_freq(model.device)
        self._llm = self._wrap(self._llm_step)
        self._bottom = self._wrap(self._bottom_step)
        self._top = self._wrap(self._top_step)
        # capacities -> [(storage, weak references to the caches handed out over it)]
        self._pool: dict[tuple[int, int], list[tuple[StreamCaches, tuple]]] = {}

    def _wrap(self, step: Callable) -> Callable:
        if not self.config.compile:
            return step
        mode = None
        if self.config.backend == "inductor":  # other backends take no mode
            mode = self.config.mode or (
                "reduce-overhead" if self.model.device.type == "cuda" else "default")
        limits = torch._dynamo.config
        limits.recompile_limit = max(limits.recompile_limit, RECOMPILE_LIMIT)
        return torch.compile(step, backend=self.config.backend, mode=mode, dynamic=False,
                             fullgraph=True)

    def new_caches(self, max_llm_len: int, max_speech_len: int) -> StreamCaches:
        """Caches rounded up to capacity_multiple; storage is reused once a turn dropped it.

        Reuse keeps the cache addresses CUDA graphs were recorded with (a new address means
        recording again). Up to POOLED_PER_SHAPE storages per shape stay allocated.
        """
        shape = (round_up(max_llm_len, self.config.capacity_multiple),
                 round_up(max_speech_len, self.config.capacity_multiple))
        entries = self._pool.setdefault(shape, [])
        free = [i for i, (_, leases) in enumerate(entries)
                if all(lease() is None for lease in leases)]
        if free:
            storage = entries[free[0]][0]
        else:
            storage = self.model.new_caches(*shape)
            for cache in (storage.llm, storage.bottom, storage.top):
                # Written in place by the graphs: they replay on this memory, with no copy.
                torch._dynamo.mark_static_address(cache.kv)
        caches = StreamCaches(storage.llm.reuse(), storage.bottom.reuse(), storage.top.reuse())
        leases = tuple(weakref.ref(c) for c in (caches.llm, caches.bottom, caches.top))
        if free:
            entries[free[0]] = (storage, leases)
        elif len(entries) < POOLED_PER_SHAPE:
            entries.append((storage, leases))
        return caches

    @torch.inference_mode()
    def llm_forward(self, embeds: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """LLM over input embeddings [1, T, H] -> normed hidden states [1, T, H]."""
        if embeds.shape[1] != 1:
            return self.model.llm_forward(embeds, cache)
        return self._run(self._llm, embeds, cache)

    @torch.inference_mode()
    def bottom_forward(self, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Speech-side ids [1, T] -> bottom-stack states after `audio_norm` [1, T, H]."""
        if ids.shape[1] != 1 or not self.config.speech_steps:
            return self.model.bottom_forward(ids, cache)
        return self._run(self._bottom, ids, cache)

    @torch.inference_mode()
    def top_forward(self, h_b: torch.Tensor, cache: KVCache,
                    window_ids: torch.Tensor | None = None,
                    window_positions: torch.Tensor | None = None) -> torch.Tensor:
        """Top stack over bottom states [1, T, H]; the last position attends to the window."""
        if (h_b.shape[1] != 1 or not self.config.speech_steps or window_ids is None
                or window_ids.numel() == 0 or window_positions is None):
            return self.model.top_forward(h_b, cache, window_ids, window_positions)
        # h_b is a view into the turn's hidden buffer: its strides follow that buffer's length,
        # and the graph guards on strides, so every turn would compile anew without a copy.
        h_b = h_b.clone(memory_format=torch.contiguous_format)
        return self._run(self._top, h_b, cache, window_ids, window_positions.to(h_b.device))

    def _run(self, step: Callable, x: torch.Tensor, cache: KVCache,
             *window: torch.Tensor) -> torch.Tensor:
        start = cache.reserve(1)
        # arange launches a kernel with a host scalar: no host-to-device copy, no sync
        position = torch.arange(start, start + 1, device=cache.kv.device)
        out = step(x, cache.kv, position, *window)
        cache.advance(1)
        # A CUDA-graph output lives in the graph pool until the next compiled call overwrites
        # it; the bottom step's output is read by the next top step, after other calls.
        return out.clone() if self.config.compile else out

    def _llm_step(self, x: torch.Tensor, kv: torch.Tensor,
                  position: torch.Tensor) -> torch.Tensor:
        m = self.model.model
        return m.norm(stack_step(m.layers, x, kv, position, self._inv_freq))

    def _bottom_step(self, ids: torch.Tensor, kv: torch.Tensor,
                     position: torch.Tensor) -> torch.Tensor:
        m = self.model.model
        x = m.audio_embed_tokens(ids)  # [1, 1, H]
        return m.audio_norm(stack_step(m.bottom_audio_layers, x, kv, position, self._inv_freq))

    def _top_step(self, h_b: torch.Tensor, kv: torch.Tensor, position: torch.Tensor,
                  window_ids: torch.Tensor, window_positions: torch.Tensor) -> torch.Tensor:
        m = self.model.model
        cross = (self.model.text_to_audio_proj(window_ids), window_positions)  # [1, W, H], [W]
        x = stack_step(m.top_audio_layers, h_b, kv, position, self._inv_freq, cross)
        return m.top_audio_norm(x)
