"""Behaviour of the tiny flow: mel lengths, determinism, save/load, chunk path, bad inputs."""
from pathlib import Path

import pytest
import torch

from stream_omni_ros.errors import CheckpointError, InputError
from stream_omni_ros.vocoder.flow import Flow, load_flow_weights, tiny_flow_config

SPEAKER = torch.randn(1, 192, generator=torch.Generator().manual_seed(7))


def units_of(n: int, seed: int = 0) -> torch.Tensor:
    """n random unit ids of the tiny vocabulary, shaped [1, n]."""
    return torch.randint(0, 32, (1, n), generator=torch.Generator().manual_seed(seed))


def mel_of(flow: Flow, units: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Mel for units with noise from a seeded generator."""
    return flow.inference(units, SPEAKER, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("n_units", [1, 2, 25, 40, 41, 70])
def test_mel_length_follows_cosyvoice_formula(tiny_flow: Flow, n_units: int) -> None:
    mel = mel_of(tiny_flow, units_of(n_units))
    assert mel.shape == (1, 80, int(n_units / 25 * 22050 / 256))
    assert torch.isfinite(mel).all()


def test_known_lengths_match_the_spec(tiny_flow: Flow) -> None:
    # doc/model.md §8.3: 38 units -> 130 frames; 20 edge units -> 68 frames
    assert tiny_flow.mel_frames_for(38) == 130
    assert tiny_flow.mel_frames_for(20) == 68


def test_same_seed_same_mel_other_seed_other_mel(tiny_flow: Flow) -> None:
    units = units_of(30)
    first, again = mel_of(tiny_flow, units, seed=3), mel_of(tiny_flow, units, seed=3)
    other = mel_of(tiny_flow, units, seed=4)
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 1e-3


def test_loaded_flow_reproduces_the_saved_one(flow_file: Path, tiny_flow: Flow) -> None:
    fresh = Flow(tiny_flow_config()).eval()
    load_flow_weights(fresh, torch.load(flow_file, weights_only=True), str(flow_file))
    units = units_of(45, seed=1)
    assert torch.equal(mel_of(fresh, units), mel_of(tiny_flow, units))


def test_loader_lists_missing_and_unexpected_keys(flow_file: Path) -> None:
    state = torch.load(flow_file, weights_only=True)
    del state["encoder_proj.bias"]
    state["decoder.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="encoder_proj.bias") as info:
        load_flow_weights(Flow(tiny_flow_config()), state, str(flow_file))
    assert "decoder.extra.weight" in str(info.value) and "flow.pt" in str(info.value)


def test_loader_names_a_misshapen_tensor(flow_file: Path) -> None:
    state = torch.load(flow_file, weights_only=True)
    state["input_embedding.weight"] = torch.zeros(64, 16)
    with pytest.raises(CheckpointError, match=r"input_embedding.weight: \[64, 16\]"):
        load_flow_weights(Flow(tiny_flow_config()), state, "flow.pt")


def test_inference_equals_its_parts(tiny_flow: Flow) -> None:
    units = units_of(50, seed=2)
    mu = tiny_flow.units_to_mu(units)
    spk = tiny_flow.speaker_to_condition(SPEAKER)
    noise = tiny_flow.make_noise(mu.shape[-1], torch.Generator().manual_seed(0))
    assert torch.equal(tiny_flow.solve(mu, spk, noise), mel_of(tiny_flow, units))


def test_guidance_rate_changes_the_mel(tiny_flow: Flow) -> None:
    mu = tiny_flow.units_to_mu(units_of(20))
    spk = tiny_flow.speaker_to_condition(SPEAKER)
    noise = tiny_flow.make_noise(mu.shape[-1], torch.Generator().manual_seed(0))
    guided = tiny_flow.solve(mu, spk, noise, n_timesteps=2, cfg_rate=0.7)
    plain = tiny_flow.solve(mu, spk, noise, n_timesteps=2, cfg_rate=0.0)
    assert (guided - plain).abs().max() > 1e-4


def interpolated_grid(flow: Flow, h: torch.Tensor, mel_frames: int) -> torch.Tensor:
    """The regulator's interpolated frames (its conv stack's input), observed with a hook."""
    seen = []
    hook = flow.length_regulator.model.register_forward_pre_hook(
        lambda _module, args: seen.append(args[0]))
    try:
        flow.length_regulator(h, mel_frames, 20, 68)
    finally:
        hook.remove()
    return seen[0]


@torch.inference_mode()
def test_long_input_keeps_68_frame_edges(tiny_flow: Flow) -> None:
    # N > 40: the first and last 20 units are interpolated to 68 frames each on their own, so
    # frame 67 is exactly unit 19 and frame 138 exactly unit 40 (a plain 60 -> 206
    # interpolation would blend neighbours there)
    h = torch.randn(1, 80, 60, generator=torch.Generator().manual_seed(0))
    grid = interpolated_grid(tiny_flow, h, 206)
    assert torch.equal(grid[..., 67], h[..., 19]) and torch.equal(grid[..., 138], h[..., 40])
    assert torch.equal(grid[..., 0], h[..., 0]) and torch.equal(grid[..., 205], h[..., 59])
    short = interpolated_grid(tiny_flow, h[..., :40], 137)  # N = 40: one plain interpolation
    assert not torch.equal(short[..., 67], h[..., 19])
    assert tiny_flow.units_to_mu(units_of(60)).shape == (1, 80, 206)


def test_chunk_window_with_explicit_frames(tiny_flow: Flow) -> None:
    mu = tiny_flow.units_to_mu(units_of(12), mel_frames=30)
    assert mu.shape == (1, 80, 30)


@pytest.mark.parametrize("units, message", [
    (torch.zeros(1, 0, dtype=torch.long), "no units"),
    (torch.tensor([[1, 2, 32]]), "unit id 32 is out of range"),
    (torch.tensor([[-1, 2]]), "unit id -1 is out of range"),
    (torch.tensor([[1.0, 2.0]]), "dtype torch.float32"),
    (torch.tensor([1, 2]), r"shape \[2\]; expected \[1, N\]"),
    ([1, 2, 3], "torch.Tensor"),
])
def test_bad_units_are_rejected(tiny_flow: Flow, units: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        tiny_flow.inference(units, SPEAKER, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("shape", [(192,), (1, 80), (2, 192)])
def test_bad_speaker_embedding_is_rejected(tiny_flow: Flow, shape: tuple) -> None:
    with pytest.raises(InputError, match=r"speaker embedding has shape .*expected \[1, 192\]"):
        tiny_flow.inference(units_of(5), torch.zeros(shape), torch.Generator().manual_seed(0))


def test_solve_rejects_mismatched_noise(tiny_flow: Flow) -> None:
    mu = tiny_flow.units_to_mu(units_of(5))
    spk = tiny_flow.speaker_to_condition(SPEAKER)
    with pytest.raises(InputError, match="noise has shape"):
        tiny_flow.solve(mu, spk, torch.zeros(1, 80, mu.shape[-1] + 1))
