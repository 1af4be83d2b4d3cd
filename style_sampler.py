"""Sample interpolated styles from a trained VAE to disk (the training data of the multi-style stylizer), and the one
reader and writer of such a sample folder's files.

    python style_sampler.py --vae runs/vae --out runs/samples [--pairs 64] [--points 9] [--interp linear|slerp]
                            [--pair A,B] [--temperature 1.0] [--draw gaussian|posterior] [--seed 0]
                            [--batch-size 32] [--shard i/n] [--sample-size PX]
    python style_sampler.py --out runs/samples --verify          # manifest, files and sizes agree? (exit 1 if not)

For pair index p a generator seeded by (seed, p) alone draws z_a ~ N(mean_A, (T std_A)^2) and
z_b ~ N(mean_B, (T std_B)^2) from the per-style latent Gaussians in latents.npz. Drawing both ends of every pair
independently is the original design's random pairing of A samples with B samples, and it lets any pair be
regenerated on its own. `--draw posterior` draws each end from the style's encoded crops instead (a random crop's
code plus its posterior noise: the aggregate posterior, not a Gaussian fitted to it). Each pair is walked at
`points` evenly spaced t = 0 ... 1 (inclusive) and decoded.

`--sample-size PX` draws the samples PX pixels square instead of at the VAE's crop size; only a `--decoder texture`
VAE can (it is fully convolutional in its noise image). Give it the stylizer's --size: a Gram matrix depends on the
image size as well as on the strokes (VGG's zero padding weighs the border, most at relu4_3), and the stylizer
compares its output's Grams with the samples' (what it gives: README, the multi-style experiment).

The sample folder: `pair_00012_t0.250.png` per image (atomic writes), `manifest.jsonl` (one fsync'd line per image:
file, pair, t, styles, weights with 1-t for A and t for B in latents.npz order), `sampler.json` (config + the VAE
run used) and, once a stylizer has read it, `grams.npz` (the Gram matrices of every sample, keyed to the manifest's
hash). Only the functions under "The sample folder" below touch these files; stylizer_data.py and inspect_images.py
go through them.

A rerun writes only what is missing and produces byte-identical files: decode batches are fixed blocks of pair
indices, so an image's bytes never depend on what was already on disk or on the shard. `--shard i/n` writes the
blocks k with k % n == i; the shards together equal one run, even writing into the same folder at once.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import image_utilities as iu
from run_dir import FolderLock, RunError


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    vae: str
    pairs: int = 64
    points: int = 9
    interp: str = "linear"
    pair: str = ""
    temperature: float = 1.0
    draw: str = "gaussian"
    seed: int = 0
    batch_size: int = 32
    size: int = 0  # --sample-size; 0: the VAE's crop size


# --------------------------------------------------------------------------------------------------------------------
# The sample folder: the one reader and writer of manifest.jsonl, sampler.json and the Gram cache

DRAWS = ("gaussian", "posterior")
MANIFEST, SAMPLER_JSON, GRAM_CACHE = "manifest.jsonl", "sampler.json", "grams.npz"
LEGACY_KEYS = {"steps": "points", "styles": "pair"}  # sampler.json keys of folders written before issue 11


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
    except (OSError, RuntimeError):  # a symlink loop
        return "names a file that cannot be resolved"
    if Path(name).is_absolute() or not resolved.is_relative_to(root) or resolved == root:
        return "names a file outside the sample folder"
    if (path.exists() or path.is_symlink()) and not resolved.is_file():
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
    record = json.loads(path.read_text())
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


# --------------------------------------------------------------------------------------------------------------------
# Sampling

def style_pairs(names, chosen: str) -> list[tuple[int, int]]:
    """The (A, B) style indices pairs cycle through: the chosen pair, or every pair of styles in order."""
    if chosen:
        parts = [s.strip() for s in chosen.split(",")]
        if len(parts) != 2 or parts[0] == parts[1]:
            raise ValueError(f"--pair takes two different style names, e.g. {names[0]},{names[-1]}")
        missing = [p for p in parts if p not in names]
        if missing:
            raise ValueError(f"--pair: no style '{missing[0]}' in this VAE (it has {', '.join(names)})")
        return [(names.index(parts[0]), names.index(parts[1]))]
    if len(names) < 2:
        raise ValueError("the VAE holds a single style; interpolation needs two")
    return list(itertools.combinations(range(len(names)), 2))


def pair_latents(latents: dict, config: SamplerConfig, p: int, pairs) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Style indices and the two drawn latents of pair `p`, from a generator seeded by (seed, p) alone. `gaussian`:
    from each style's Gaussian, with the covariance in latents.npz (VAEs since issue 12; older files give
    per-dimension draws). `posterior`: from the aggregate posterior itself, a mixture with one component per encoded
    crop: a random crop's code plus its own posterior noise."""
    from vae_latents import latent_spread

    a, b = pairs[p % len(pairs)]
    rng = np.random.default_rng([config.seed, p])
    mean, temp = latents["mean"], config.temperature

    def draw(k):
        if config.draw == "posterior":
            i = rng.integers(latents["codes"].shape[1])
            return latents["codes"][k, i] + temp * latents["code_std"][k, i] * rng.standard_normal(mean.shape[1])
        return mean[k] + temp * latent_spread(latents, k, rng.standard_normal(mean.shape[1]))

    z_a = draw(a)
    z_b = draw(b)
    return a, b, z_a, z_b


def pair_noise(config: SamplerConfig, p: int, size: int, channels: int) -> np.ndarray:
    """The decoder noise of pair `p` (for VAEs trained with --noise-channels), from a generator of (seed, p, 1)."""
    from vae_model import decoder_noise

    return decoder_noise(np.random.default_rng([config.seed, p, 1]), 1, size, channels)


def sample_size(config: SamplerConfig, vae_config, vae_dir: Path) -> int:
    """The samples' size: --sample-size, or the VAE's crop size. Raises RunError when the VAE cannot draw at it."""
    from vae_model import TEXTURE_MULTIPLE

    if not config.size or config.size == vae_config.size:
        return vae_config.size
    if vae_config.decoder != "texture":
        raise RunError(f"{vae_dir}: --sample-size {config.size}: a {vae_config.decoder} decoder draws only its crop "
                       f"size ({vae_config.size}); a --decoder texture VAE draws any multiple of {TEXTURE_MULTIPLE}")
    if config.size % TEXTURE_MULTIPLE:
        raise RunError(f"--sample-size {config.size}: the texture decoder draws multiples of {TEXTURE_MULTIPLE}")
    if vae_config.decoder_padding == "reflect" and config.size < 2 * TEXTURE_MULTIPLE:
        raise RunError(f"--sample-size {config.size}: a reflect-padded decoder's first map must be 2 px or more to "
                       f"mirror; draw {2 * TEXTURE_MULTIPLE} px or more")
    return config.size


def file_name(p: int, t: float) -> str:
    return f"pair_{p:05d}_t{t:.3f}.png"


def manifest_entry(p: int, t: float, a: int, b: int, names) -> dict:
    weights = [0.0] * len(names)
    weights[a] += round(1.0 - t, 6)
    weights[b] += round(t, 6)
    return {"file": file_name(p, t), "pair": p, "t": round(float(t), 6), "styles": [names[a], names[b]],
            "weights": weights}


def blocks(config: SamplerConfig) -> list[list[int]]:
    """Pairs grouped into fixed decode batches of whole pairs."""
    per = max(1, config.batch_size // config.points)
    return [list(range(s, min(s + per, config.pairs))) for s in range(0, config.pairs, per)]


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard takes i/n, e.g. 0/4; got '{text}'") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {text}: need 0 <= i < n")
    return i, n


def vae_fingerprint(vae_dir: Path, checkpoint: str) -> dict:
    """The VAE checkpoint the samples come from (the one load_vae restored) and the hash of its latents.npz."""
    digest = hashlib.sha256((vae_dir / "latents.npz").read_bytes()).hexdigest()
    return {"vae_checkpoint": Path(checkpoint).name, "latents_sha256": digest}


def expected_entries(config: SamplerConfig, names) -> list[dict]:
    pairs = style_pairs(names, config.pair)
    ts = np.linspace(0.0, 1.0, config.points)
    return [manifest_entry(p, t, *pairs[p % len(pairs)], names) for p in range(config.pairs) for t in ts]


def sample(config: SamplerConfig, out: Path, shard=(0, 1), quiet: bool = False) -> dict:
    """Write the missing images and manifest lines of this shard. Returns counts."""
    import keras
    from vae_keras import load_vae
    from vae_latents import load_latents
    from vae_model import interpolate

    vae_dir = Path(config.vae)
    vae, vae_config = load_vae(vae_dir)
    latents = load_latents(vae_dir)
    if config.draw == "posterior" and "codes" not in latents:
        raise RunError(f"{vae_dir / 'latents.npz'}: has no per-crop codes for --draw posterior; rewrite it with "
                       f"`python vae_keras.py encode --run-dir {vae_dir}`")
    names = [str(n) for n in latents["styles"]]
    pairs = style_pairs(names, config.pair)
    size = sample_size(config, vae_config, vae_dir)
    iu.make_dirs(out)
    # One writer per shard (shards share the folder by design); a killed writer's temp files are removed once
    # they are a minute old, so a live shard's file in the middle of its atomic write is never touched.
    FolderLock(out, f".lock-shard-{shard[0]}-of-{shard[1]}")
    removed = iu.remove_stale_temps(out, time.time() - 60)
    if removed and not quiet:
        print(f"removed {len(removed)} temp files left by a killed sampler", flush=True)
    check_or_write_config(out, {**dataclasses.asdict(config), "vae": str(vae_dir.resolve()),
                                **vae_fingerprint(vae_dir, vae.checkpoint), "style_names": names,
                                "size": size})
    ts = np.linspace(0.0, 1.0, config.points)
    in_manifest = manifest_by_file(out)
    mine = [blk for k, blk in enumerate(blocks(config)) if k % shard[1] == shard[0]]
    todo = []
    for blk in mine:
        missing = [(p, t) for p in blk for t in ts
                   if file_name(p, t) not in in_manifest or not (out / file_name(p, t)).exists()]
        if missing:
            todo.append((blk, missing))
    total = sum(len(m) for _, m in todo)
    bar = keras.utils.Progbar(total, unit_name="image") if total and not quiet else None
    written, t0 = 0, time.perf_counter()
    for blk, missing in todo:
        z = np.concatenate([interpolate(*pair_latents(latents, config, p, pairs)[2:], ts, config.interp)
                            for p in blk])
        noise = None
        if vae.noise_channels:  # one arrangement per pair, the same at every t: only the style moves along it
            noise = np.concatenate([np.repeat(pair_noise(config, p, size, vae.noise_channels),
                                              len(ts), 0) for p in blk])
        images = vae.decode(z, noise)  # the whole block, always: the same batch gives the same bytes
        new_entries = []
        for p, t in missing:
            i = blk.index(p) * config.points + int(np.flatnonzero(ts == t)[0])
            path = out / file_name(p, t)
            if not path.exists():
                iu.save_image(path, images[i])
                written += 1
            if file_name(p, t) not in in_manifest:
                new_entries.append(manifest_entry(p, t, *pairs[p % len(pairs)], names))
        if new_entries:
            append_manifest(out, new_entries)
        if bar:
            bar.add(len(missing))
    seconds = time.perf_counter() - t0
    complete = canonicalise_manifest(out, expected_entries(config, names))
    if not quiet:
        rate = f", {written / seconds:.1f} images/s" if written and seconds > 0 else ""
        print(f"wrote {written} images to {out} in {seconds:.1f} s{rate}; shard {shard[0]}/{shard[1]}; "
              f"folder {'complete' if complete else 'still missing other shards'}", flush=True)
    return {"written": written, "complete": complete}


def verify(out: Path) -> list[str]:
    """Problems found comparing manifest, files and sampler.json; empty when the folder is complete and sound."""
    record = read_sampler_json(out)
    if record is None:
        return [f"{out / SAMPLER_JSON}: missing"]
    config = SamplerConfig(**{f.name: record[f.name] for f in dataclasses.fields(SamplerConfig)})
    problems = [f"{p.relative_to(out)}: a temp file left by a killed writer (the next sampler run removes it)"
                for p in iu.stale_temps(out, time.time() - 60)]
    try:
        have = manifest_by_file(out)
    except RunError as e:
        return problems + [str(e)]
    for e in expected_entries(config, record["style_names"]):
        if e["file"] not in have:
            problems.append(f"{e['file']}: not in {MANIFEST}")
            continue
        if entry_line(have[e["file"]]) != entry_line(e):
            problems.append(f"{e['file']}: manifest line differs from the expected {entry_line(e).strip()}")
        try:
            im = iu.load_image(out / e["file"])
            if im.shape[:2] != (record["size"], record["size"]):
                problems.append(f"{e['file']}: {im.shape[1]}x{im.shape[0]}, expected {record['size']} square")
        except iu.ImageError as err:
            problems.append(f"{e['file']}: {err.reason}")
    return problems


# --------------------------------------------------------------------------------------------------------------------
# CLI

def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=iu.HelpFormatter)
    d = SamplerConfig(vae="")
    ap.add_argument("--vae", type=Path, help="a trained vae_keras.py run folder with latents.npz (needed to sample)")
    ap.add_argument("--out", type=Path, required=True, help="the sample folder to write (or to --verify)")
    ap.add_argument("--pairs", type=int, default=d.pairs, help="how many (A, B) latent pairs to draw")
    ap.add_argument("--points", type=int, default=d.points, help="images per pair, at t = 0 ... 1 inclusive")
    ap.add_argument("--interp", choices=("linear", "slerp"), default=d.interp,
                    help="path between the two latents: straight line or great circle")
    ap.add_argument("--pair", default=d.pair, metavar="A,B",
                    help="the two styles to interpolate, by name (default: cycle through every pair of styles)")
    ap.add_argument("--temperature", type=float, default=d.temperature,
                    help="scale of the spread when drawing (gaussian, 0: the style means; posterior, 0: the crops' "
                         "own codes)")
    ap.add_argument("--draw", choices=DRAWS, default=d.draw,
                    help="gaussian: from each style's Gaussian (mean and covariance of its codes); posterior: from "
                         "the codes themselves, a random encoded crop's posterior (keeps the codes' clusters that a "
                         "single Gaussian fills in)")
    ap.add_argument("--seed", type=int, default=d.seed, help="pair p draws from a generator seeded by (seed, p)")
    ap.add_argument("--batch-size", type=int, default=d.batch_size, help="images decoded at once (whole pairs)")
    ap.add_argument("--shard", default="0/1", metavar="i/n", help="write only shard i of n")
    ap.add_argument("--sample-size", dest="size", type=int, default=d.size, metavar="PX",
                    help="draw PX x PX samples instead of the VAE's crop size (a --decoder texture VAE only; give the "
                         "stylizer's --size); 0: the VAE's crop size")
    ap.add_argument("--verify", action="store_true", help="check manifest against files; exit 1 on a mismatch")
    ap.set_defaults(run=sample_command)
    return ap


def sample_command(args) -> int:
    if args.verify:
        return verify_command(args.out)
    if args.vae is None:
        return iu.fail("--vae RUN_DIR is required (unless --verify)")
    if args.pairs < 1 or args.points < 2 or args.batch_size < 1 or args.temperature < 0 or args.size < 0:
        return iu.fail("need --pairs >= 1, --points >= 2, --batch-size >= 1, --temperature >= 0 and --sample-size >= 0")
    shard = parse_shard(args.shard)
    config = SamplerConfig(vae=str(args.vae.resolve()), pairs=args.pairs, points=args.points, interp=args.interp,
                           pair=args.pair, temperature=args.temperature, draw=args.draw, seed=args.seed,
                           batch_size=args.batch_size, size=args.size)
    sample(config, args.out, shard)
    return 0


def main(argv=None) -> int:
    return iu.run_main(build_parser(), argv)


def verify_command(out: Path) -> int:
    if not out.is_dir():
        return iu.fail(f"{out}: no such folder")
    problems = verify(out)
    for p in problems[:20]:
        print(f"mismatch: {p}", file=sys.stderr)
    if problems:
        return iu.fail(f"{out}: {len(problems)} problems", code=1)
    print(f"{out}: manifest and files agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
