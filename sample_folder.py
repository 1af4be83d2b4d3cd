"""The style-sample folder, and the one reader and writer of its files (style_sampler.py writes the samples; the
stylizer, inspect_images.py, sample_fidelity.py and the studio read them through here):

- `pair_00012_t0.250.png`: one image per (pair, t), written atomically;
- `manifest.jsonl`: one fsync'd JSON line per image: file, pair, t, styles, weights (1-t for A and t for B, in the
  VAE's style order). Every line is checked when read: weights, and a file name that stays inside the folder after
  following symlinks (a folder someone sends you cannot make a reader open /etc/passwd);
- `sampler.json`: the sampler's settings and the VAE run it drew from;
- `grams.npz`: once a stylizer has read the folder, the Gram matrices of every sample, keyed to the manifest's hash.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from pathlib import Path

import numpy as np

import image_utilities as iu
from run_config import RunError

MANIFEST, SAMPLER_JSON, GRAM_CACHE = "manifest.jsonl", "sampler.json", "grams.npz"


LEGACY_KEYS = {"steps": "points", "styles": "pair"}  # sampler.json keys of folders written before a rename


class ManifestError(RunError):
    """A manifest line that cannot be used; the message starts with FILE:LINE."""


def read_manifest(folder) -> list[dict]:
    """The manifest's entries in file order ([] without a manifest), every line checked (entry_problem): a bad line
    is a ManifestError naming the file and line. A torn last line (a killed writer: no newline, not JSON) is
    ignored."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return []
    record = read_sampler_json(folder) or {}
    num_styles = len(record["style_names"]) if record.get("style_names") else None
    root = Path(folder).resolve()
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    last = lines.pop()  # what follows the last newline: "" unless the writer was killed mid-line
    entries = []
    for number, line in enumerate(lines + [last], 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) + 1:
                break
            raise ManifestError(f"{path}:{number}: not a JSON line") from None
        problem = entry_problem(entry, num_styles) or file_problem(root, entry["file"])
        if problem:
            raise ManifestError(f"{path}:{number}: {problem}")
        num_styles = num_styles or len(entry["weights"])
        entries.append(entry)
    return entries


def entry_problem(entry, num_styles: int | None) -> str | None:
    """Why a manifest entry cannot be used (None when it can): it needs a file name and one finite, non-negative
    weight per style of the folder, summing to 1 within 1e-4."""
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) \
            or not isinstance(entry.get("weights"), list):
        return "needs a \"file\" name and a \"weights\" list"
    try:
        w = np.array(entry["weights"], dtype=np.float64)
    except (TypeError, ValueError):
        return "weights must be numbers"
    if w.ndim != 1 or not w.size:
        return "weights must be a flat list of numbers"
    if num_styles and len(w) != num_styles:
        return f"{len(w)} weights, but the folder has {num_styles} styles"
    if not np.all(np.isfinite(w)):
        return "weights must be finite"
    if np.any(w < 0):
        return f"weights must be non-negative, got {entry['weights']}"
    if abs(w.sum() - 1.0) > 1e-4:
        return f"weights sum to {w.sum():.6g}, not 1"
    return None


def file_problem(root: Path, name: str) -> str | None:
    """Why a manifest's file name cannot be read as a sample of the folder `root` (resolved), None when it can:
    after following symlinks it must stay inside the folder (no absolute path, no '..', no link out), and what it
    names, where it exists, must be a regular file. A missing file is no problem here: readers skip it as
    unreadable."""
    path = root / name
    try:
        resolved = path.resolve()
        exists = path.exists() or path.is_symlink()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
        return "names a file that cannot be resolved"
    if Path(name).is_absolute() or not resolved.is_relative_to(root) or resolved == root:
        return "names a file outside the sample folder"
    if exists and not resolved.is_file():
        return "names something that is not a regular file"
    return None


def manifest_by_file(folder) -> dict[str, dict]:
    return {e["file"]: e for e in read_manifest(folder)}


def entry_line(entry: dict) -> str:
    return json.dumps(entry, sort_keys=True) + "\n"


@contextlib.contextmanager
def manifest_lock(folder: Path):
    """Serialise manifest edits between shards writing into the same folder."""
    with open(folder / ".manifest.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def append_manifest(folder: Path, entries: list[dict]):
    with manifest_lock(folder):
        path = folder / MANIFEST
        # A killed writer can leave a torn last line: cut it before appending.
        if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            good = path.read_bytes().rsplit(b"\n", 1)[0]
            iu.atomic_write_bytes(path, good + b"\n" if good else b"")
        with open(path, "a", encoding="utf-8") as f:
            f.write("".join(entry_line(e) for e in entries))
            f.flush()
            os.fsync(f.fileno())


def canonicalise_manifest(folder: Path, expected: list[dict]) -> bool:
    """Once every expected entry is present, rewrite the manifest in (pair, t) order, so a sharded or resumed run
    ends with the same manifest bytes as a single uninterrupted one. Returns whether it is complete."""
    with manifest_lock(folder):
        have = manifest_by_file(folder)
        if any(e["file"] not in have for e in expected):
            return False
        text = "".join(entry_line(e) for e in expected)
        path = folder / MANIFEST
        if not path.exists() or path.read_text() != text:
            iu.atomic_write_text(path, text)
        return True


def read_sampler_json(folder) -> dict | None:
    """sampler.json with today's key names (None without one)."""
    path = Path(folder) / SAMPLER_JSON
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: not JSON ({e})") from None
    if not isinstance(record, dict):
        raise RunError(f"{path}: not a JSON object")
    record.setdefault("draw", "gaussian")  # folders written before --draw
    return {LEGACY_KEYS.get(k, k): v for k, v in record.items()}


def check_or_write_config(folder: Path, record: dict):
    """Write sampler.json for a new folder; refuse (RunError) to add to a folder sampled with other settings."""
    old = read_sampler_json(folder)
    if old is None:
        iu.atomic_write_json(folder / SAMPLER_JSON, record)
        return
    for k, v in record.items():
        if old.get(k) != v:
            raise RunError(f"{folder / SAMPLER_JSON}: this folder was sampled with {k}={old.get(k)!r}, the command "
                           f"asks for {k}={v!r}; use another --out (or the folder's own settings)")


def style_names(folder, num_styles: int) -> list[str]:
    """The VAE's style names recorded in sampler.json, or style_0, style_1 ... without one."""
    record = read_sampler_json(folder) or {}
    return record.get("style_names") or [f"style_{i}" for i in range(num_styles)]


def manifest_sha256(folder) -> str:
    return hashlib.sha256((Path(folder) / MANIFEST).read_bytes()).hexdigest()


def read_gram_cache(folder, layers):
    """(weights [N, S], {layer: Grams [N, C, C]}, style names) from the folder's Gram cache, or None when there is
    none, it is broken, or it was made from another manifest or other layers."""
    path = Path(folder) / GRAM_CACHE
    if not path.exists():
        return None
    try:
        with np.load(path) as z:
            if str(z["manifest_sha256"]) != manifest_sha256(folder) or list(z["layers"]) != list(layers):
                return None
            return z["weights"], {name: z[name] for name in layers}, [str(n) for n in z["style_names"]]
    except (OSError, ValueError, KeyError):
        return None  # a stale or broken cache is simply rebuilt


def write_gram_cache(folder, layers, weights, grams: dict, names) -> Path:
    return iu.atomic_write_npz(Path(folder) / GRAM_CACHE, {
        "manifest_sha256": manifest_sha256(folder), "layers": np.array(layers), "weights": weights,
        "style_names": np.array(names), **grams})
