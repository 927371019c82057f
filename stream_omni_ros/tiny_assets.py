"""Tiny random asset sets (Stream-Omni checkpoint + CosyVoice folder), cached on disk.

The demo and the end-to-end tests run the real loaders on these folders when no real weights are
at hand. Kinds of set: `tiny` (byte-level tokenizer, fast: the tests), `demo` (the real Llama-3
tokenizer and heads that land on readable words: the demo and the benchmark) and
`tokenizer-full` (a random speech tokenizer of the real one's size, for latency benchmarks).
A set lives in `<cache>/<kind>-<version>/`; the version holds a digest of the code that writes
the set and of the code that reads it, so an edit there produces a new set instead of a stale
one. A set counts as intact only when every file listed in its manifest has the recorded size
and SHA-256; a set is built in a private folder and renamed into place, so a crash or a
concurrent builder never leaves a half-written set under the final name. Each use touches the
set's folder; building a new set removes the sets (and abandoned builds) that nobody used for
STALE_AFTER_S, so edits of the sources do not pile up old sets.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from stream_omni_ros.errors import CheckpointError, ConfigError

ASSET_FORMAT = "1"  # bump when the layout of the set changes
MANIFEST_FILE = "manifest.json"
MODEL_FOLDER = "stream-omni-tiny"
COSYVOICE_FOLDER = "cosyvoice-tiny"
SPEECH_TOKENIZER_FILE = "speech_tokenizer_v1.onnx"
CACHE_ENV = "STREAM_OMNI_CACHE"
# Per kind, the sources that decide what the writers produce and what the loaders accept.
_DIGESTED = {"tiny": ("model/*.py", "vocoder/*.py"), "demo": ("model/*.py", "vocoder/*.py"),
             "tokenizer-full": ("model/tiny_speech_tokenizer.py",
                                "model/speech_tokenizer.py")}
KINDS = tuple(_DIGESTED)
# Long enough that a set another checkout (another branch, a parallel CI job) still uses stays.
STALE_AFTER_S = 7 * 24 * 3600


@dataclass(frozen=True)
class TinyAssets:
    """Where a tiny asset set is, its version, and whether it was reused from the cache."""

    root: Path
    model_path: Path
    cosyvoice_path: Path
    version: str
    reused: bool


def default_cache_dir() -> Path:
    """$STREAM_OMNI_CACHE, else $XDG_CACHE_HOME/stream_omni_ros, else ~/.cache/stream_omni_ros."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg_cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg_cache).expanduser() / "stream_omni_ros"


def tiny_assets_version(kind: str = "tiny") -> str:
    """ASSET_FORMAT plus a short digest of this module and the sources the kind depends on."""
    package_root = Path(__file__).resolve().parent
    sources = [Path(__file__).resolve()]
    for pattern in _DIGESTED[_checked_kind(kind)]:
        sources += sorted(package_root.glob(pattern))
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return f"{ASSET_FORMAT}-{digest.hexdigest()[:12]}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _file_records(root: Path) -> dict[str, dict[str, object]]:
    """Size and SHA-256 of every file under root (relative POSIX paths), manifest excluded."""
    return {path.relative_to(root).as_posix(): {"bytes": path.stat().st_size,
                                                "sha256": _sha256(path)}
            for path in sorted(root.rglob("*"))
            if path.is_file() and path.name != MANIFEST_FILE}


def asset_problems(root: Path, version: str) -> list[str]:
    """What is wrong with the set in root (missing, other version, changed files); [] if intact."""
    manifest_path = root / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return [f"{manifest_path}: unreadable ({error})"]
    if manifest.get("version") != version:
        return [f"{manifest_path}: version {manifest.get('version')!r}, expected {version!r}"]
    problems = []
    for name, record in manifest.get("files", {}).items():
        path = root / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.stat().st_size != record["bytes"] or _sha256(path) != record["sha256"]:
            problems.append(f"{path}: size or SHA-256 differs from the manifest")
    if not manifest.get("files"):
        problems.append(f"{manifest_path}: lists no files")
    return problems


def _checked_kind(kind: str) -> str:
    if kind not in _DIGESTED:
        raise ConfigError(f"unknown asset set kind {kind!r}; expected one of {KINDS}")
    return kind


def write_tiny_assets(root: Path, version: str, seed: int = 0, kind: str = "tiny") -> None:
    """Write the files of one set of this kind and, last, its manifest."""
    # Imported here: torch and onnx take seconds to import and only the writers need them.
    from stream_omni_ros.model.tiny_speech_tokenizer import (write_full_speech_tokenizer,
                                                             write_tiny_speech_tokenizer)

    if _checked_kind(kind) == "tokenizer-full":
        write_full_speech_tokenizer(root / SPEECH_TOKENIZER_FILE, seed=seed)
    else:
        from stream_omni_ros.model.readable_checkpoint import write_readable_checkpoint
        from stream_omni_ros.model.tiny_checkpoint import write_tiny_checkpoint
        from stream_omni_ros.vocoder.tiny_cosyvoice import write_tiny_cosyvoice

        write_model = write_readable_checkpoint if kind == "demo" else write_tiny_checkpoint
        write_model(root / MODEL_FOLDER, seed=seed)
        write_tiny_cosyvoice(root / COSYVOICE_FOLDER, seed=seed)
        write_tiny_speech_tokenizer(root / COSYVOICE_FOLDER, seed=seed)
    manifest = {"version": version, "seed": seed, "files": _file_records(root)}
    # The manifest goes last: its presence means every file before it was written completely.
    (root / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1), encoding="utf-8")


def _assets_at(root: Path, version: str, reused: bool) -> TinyAssets:
    return TinyAssets(root, root / MODEL_FOLDER, root / COSYVOICE_FOLDER, version, reused)


def ensure_tiny_assets(cache_dir: Path | None = None, version: str | None = None,
                       kind: str = "tiny") -> TinyAssets:
    """Reuse the intact set of this kind and version under cache_dir, or (re)build it."""
    if _checked_kind(kind) == "tokenizer-full":
        raise ConfigError("ensure_tiny_assets: a tokenizer-full set holds no model; use "
                              "ensure_full_speech_tokenizer")
    root, reused = _ensure_set(kind, cache_dir, version)
    return _assets_at(root, root.name[len(kind) + 1:], reused)


def ensure_full_speech_tokenizer(cache_dir: Path | None = None) -> Path:
    """The cached random speech tokenizer of the real one's size (built once, 0.5 GB)."""
    root, _ = _ensure_set("tokenizer-full", cache_dir, None)
    return root / SPEECH_TOKENIZER_FILE


def _ensure_set(kind: str, cache_dir: Path | None, version: str | None) -> tuple[Path, bool]:
    """(root, reused) of the intact set of this kind and version, (re)built if needed."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    version = version or tiny_assets_version(kind)
    root = cache_dir / f"{kind}-{version}"
    if not asset_problems(root, version):
        os.utime(root)  # last use, for prune_stale_sets
        return root, True
    cache_dir.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{kind}-{version}-", dir=cache_dir))
    try:
        write_tiny_assets(building, version, kind=kind)
        if root.exists():  # a damaged set of this version: replace it
            shutil.rmtree(root, ignore_errors=True)
        try:
            building.rename(root)
        except OSError:
            pass  # another process renamed its own build into place first; checked below
    finally:
        shutil.rmtree(building, ignore_errors=True)
    problems = asset_problems(root, version)
    if problems:
        raise CheckpointError(f"asset set {root} is damaged right after it was written: "
                              + "; ".join(problems))
    prune_stale_sets(cache_dir, keep=root)
    return root, False


def prune_stale_sets(cache_dir: Path, keep: Path, now: float | None = None) -> list[Path]:
    """Remove sets of any kind and abandoned builds, other than keep, unused for STALE_AFTER_S."""
    now = time.time() if now is None else now
    removed = []
    folders = [folder for kind in KINDS for pattern in (f"{kind}-*", f".{kind}-*")
               for folder in sorted(cache_dir.glob(pattern))]
    for folder in folders:
        try:
            stale = folder != keep and now - folder.stat().st_mtime > STALE_AFTER_S
        except OSError:
            continue  # removed meanwhile by another process
        if stale and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
