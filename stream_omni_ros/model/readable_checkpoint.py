"""A tiny random Stream-Omni checkpoint with the real Llama-3 tokenizer, for the demo and bench.

The weights are random and what it says is MEANINGLESS. Three heads are only scaled row by row
so that its output has the look of the real model's, not its sense:
- the text head (`lm_head`) keeps full-scale random rows for about 250 everyday English word
  tokens and shrinks every other row, so greedy text lands on words (which ones, in which order,
  the random weights decide);
- the CTC head (`audio_to_text_proj`) does the same for those words and gives the blank
  (`<|reserved_special_token_0|>`) a row scaled so that about half the units read as blank, as
  a trained CTC head leaves most 40 ms units blank; each new label then advances the text;
- the unit head (`audio_lm_head`) keeps the unit rows and shrinks the rest, so every step speaks;
- the LLM's query and key projections are scaled up: sharp random attention makes each token
  depend on a few earlier ones instead of the average of the long prompt, so the words vary
  instead of repeating one or two.
Everything else is the tiny checkpoint's random initialisation; bf16 on disk like the real one.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from stream_omni_ros.model.config import StreamOmniConfig
from stream_omni_ros.model.random_weights import FULL_CONFIG, llama3_tokenizer
from stream_omni_ros.model.tiny_checkpoint import (random_state_dict, tiny_config_dict,
                                                   write_safetensors_shards)

NUM_UNITS = 32  # the tiny CosyVoice and speech tokenizer have 32 units
WEAK_ROWS = 0.02  # scale of the rows the heads should (almost) never pick
BLANK_SCALE = 25.0  # about half the units blank (measured by the tests)
LLM_QK_GAIN = 6.0  # scale of the LLM's query and key projections
SHARD_BYTES = 64 * 1024 * 1024
# Everyday English words; those that are one Llama-3 token with a leading space are used.
WORDS = """the a an this that these those it its they we you he she i me my our your their
is are was were be been being have has had do does did can could will would should may might
and or but so if then than because when while where here there what which who how why not no yes
very just also only still again always often now today soon later all some many much more most
few every each other same new old big small long short good great little right left next last
first red blue green white black warm cold bright dark quiet loud fast slow near far open close
see look watch hear listen say tell ask know think feel want like need make take give bring put
find keep hold turn move walk run stop start help try come go get leave stay wait play work
room table chair door window light floor wall book cup water box ball paper bag shelf kitchen
house garden street car road tree flower sky sun rain day night morning evening time way thing
people friend child family hand head face voice sound music story idea place world home side top
front back inside outside around over under before after between with without from into about
one two three four five ten hundred""".split()


def readable_config_dict() -> dict:
    """The tiny anyres config.json with the Llama-3 vocabulary, specials and 32 units."""
    raw = tiny_config_dict("anyres")
    text_vocab = FULL_CONFIG["text_vocab_size"]
    raw.update({"bos_token_id": FULL_CONFIG["bos_token_id"],
                "eos_token_id": list(FULL_CONFIG["eos_token_id"]),
                "text_vocab_size": text_vocab, "audio_vocab_size": NUM_UNITS,
                "vocab_size": text_vocab + NUM_UNITS, "torch_dtype": "bfloat16"})
    return raw


def word_ids(tokenizer) -> list[int]:
    """Ids of the WORDS that the tokenizer has as one token with a leading space."""
    ids = []
    for word in dict.fromkeys(WORDS):
        token_id = tokenizer.convert_tokens_to_ids("\u0120" + word)  # byte-level leading space
        if token_id is not None and token_id != tokenizer.unk_token_id:
            ids.append(int(token_id))
    return ids


def shape_heads(tensors: dict[str, torch.Tensor], words: list[int], blank: int,
                units: range) -> None:
    """Scale head rows in place (words, blank, units strong; the rest weak) and LLM q/k."""
    for key, strong in (("lm_head.weight", words), ("audio_to_text_proj.weight", words),
                        ("audio_lm_head.weight", list(units))):
        scale = torch.full((tensors[key].shape[0], 1), WEAK_ROWS)
        scale[strong] = 1.0
        if key == "audio_to_text_proj.weight":
            scale[blank] = BLANK_SCALE
        tensors[key] = tensors[key] * scale
    for key in tensors:
        if key.startswith("model.layers.") and key.endswith(("q_proj.weight", "k_proj.weight")):
            tensors[key] = tensors[key] * LLM_QK_GAIN


def write_readable_checkpoint(folder: str | Path, seed: int = 0) -> Path:
    """Write config, generation config, bf16 random weights and the Llama-3 tokenizer."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    raw = readable_config_dict()
    tokenizer = llama3_tokenizer(NUM_UNITS)
    tokenizer.bos_token, tokenizer.eos_token = "<|begin_of_text|>", "<|eot_id|>"
    tensors = random_state_dict(StreamOmniConfig.from_dict(raw), seed)
    first_unit = raw["text_vocab_size"]
    shape_heads(tensors, word_ids(tokenizer),
                tokenizer.convert_tokens_to_ids("<|reserved_special_token_0|>"),
                range(first_unit, first_unit + NUM_UNITS))
    tensors = {key: value.to(torch.bfloat16) for key, value in tensors.items()}
    (folder / "config.json").write_text(json.dumps(raw, indent=2))
    generation = {"bos_token_id": raw["bos_token_id"], "eos_token_id": raw["eos_token_id"],
                  "do_sample": True, "temperature": 0.6, "top_p": 0.9}
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2))
    write_safetensors_shards(tensors, folder, SHARD_BYTES)
    tokenizer.save_pretrained(str(folder))
    return folder
