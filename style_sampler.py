"""Sample interpolated styles from a trained VAE to disk: the training data of the multi-style stylizer.

    python style_sampler.py --vae runs/vae --out runs/samples [--pairs 64] [--steps 9] [--interp linear|slerp]
                            [--styles A,B] [--temperature 1.0] [--seed 0] [--batch-size 32] [--shard i/n] [--verify]

For pair index p a generator seeded by (seed, p) alone draws z_a ~ N(mean_A, (T std_A)^2) and
z_b ~ N(mean_B, (T std_B)^2) from the per-style latent Gaussians in latents.npz. Drawing both ends of every pair
independently is the original design's random pairing of A samples with B samples, and it lets any pair be
regenerated on its own. Each pair is walked at `steps` evenly spaced t = 0 ... 1 (inclusive) and decoded.

Output: `pair_00012_t0.250.png` per image (atomic writes), `manifest.jsonl` (one fsync'd line per image: file, pair,
t, styles, weights with 1-t for A and t for B in latents.npz order) and `sampler.json` (config + the VAE run used).
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
from run_dir import RunError

MANIFEST = "manifest.jsonl"
SAMPLER_JSON = "sampler.json"


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    vae: str
    pairs: int = 64
    steps: int = 9
    interp: str = "linear"
    styles: str = ""
    temperature: float = 1.0
    seed: int = 0
    batch_size: int = 32


def style_pairs(names, chosen: str) -> list[tuple[int, int]]:
    """The (A, B) style indices pairs cycle through: the chosen pair, or every pair of styles in order."""
    if chosen:
        parts = [s.strip() for s in chosen.split(",")]
        if len(parts) != 2 or parts[0] == parts[1]:
            raise ValueError(f"--styles takes two different style names, e.g. {names[0]},{names[-1]}")
        missing = [p for p in parts if p not in names]
        if missing:
            raise ValueError(f"--styles: no style '{missing[0]}' in this VAE (it has {', '.join(names)})")
        return [(names.index(parts[0]), names.index(parts[1]))]
    if len(names) < 2:
        raise ValueError("the VAE holds a single style; interpolation needs two")
    return list(itertools.combinations(range(len(names)), 2))


def pair_latents(latents: dict, config: SamplerConfig, p: int, pairs) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Style indices and the two drawn latents of pair `p`, from a generator seeded by (seed, p) alone. With a
    covariance in latents.npz (VAEs since issue 12) the draws follow it; older files give per-dimension draws."""
    from vae_keras import covariance_factor

    a, b = pairs[p % len(pairs)]
    rng = np.random.default_rng([config.seed, p])
    mean, temp = latents["mean"], config.temperature

    def draw(k):
        e = rng.standard_normal(mean.shape[1])
        spread = covariance_factor(latents["cov"][k]) @ e if "cov" in latents else latents["std"][k] * e
        return mean[k] + temp * spread

    z_a = draw(a)
    z_b = draw(b)
    return a, b, z_a, z_b


def pair_noise(config: SamplerConfig, p: int, size: int, channels: int) -> np.ndarray:
    """The decoder noise of pair `p` (for VAEs trained with --noise-channels), from a generator of (seed, p, 1)."""
    from vae_model import decoder_noise

    return decoder_noise(np.random.default_rng([config.seed, p, 1]), 1, size, channels)


def file_name(p: int, t: float) -> str:
    return f"pair_{p:05d}_t{t:.3f}.png"


def manifest_entry(p: int, t: float, a: int, b: int, names) -> dict:
    weights = [0.0] * len(names)
    weights[a] += round(1.0 - t, 6)
    weights[b] += round(t, 6)
    return {"file": file_name(p, t), "pair": p, "t": round(float(t), 6), "styles": [names[a], names[b]],
            "weights": weights}


def entry_line(entry: dict) -> str:
    return json.dumps(entry, sort_keys=True) + "\n"


def blocks(config: SamplerConfig) -> list[list[int]]:
    """Pairs grouped into fixed decode batches of whole pairs."""
    per = max(1, config.batch_size // config.steps)
    return [list(range(s, min(s + per, config.pairs))) for s in range(0, config.pairs, per)]


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard takes i/n, e.g. 0/4; got '{text}'") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {text}: need 0 <= i < n")
    return i, n


@contextlib.contextmanager
def manifest_lock(out: Path):
    """Serialise manifest edits between shards writing into the same folder."""
    with open(out / ".manifest.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_manifest_entries(out: Path) -> dict[str, dict]:
    path = out / MANIFEST
    return {e["file"]: e for e in iu.read_manifest(path)} if path.exists() else {}


def append_manifest(out: Path, entries: list[dict]):
    with manifest_lock(out):
        path = out / MANIFEST
        # A killed writer can leave a torn last line: cut it before appending.
        if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            good = path.read_bytes().rsplit(b"\n", 1)[0]
            iu.atomic_write_bytes(path, good + b"\n" if good else b"")
        with open(path, "a", encoding="utf-8") as f:
            f.write("".join(entry_line(e) for e in entries))
            f.flush()
            os.fsync(f.fileno())


def canonicalise_manifest(out: Path, expected: list[dict]) -> bool:
    """Once every expected entry is present, rewrite the manifest in (pair, t) order, so a sharded or resumed run
    ends with the same manifest bytes as a single uninterrupted one. Returns whether it is complete."""
    with manifest_lock(out):
        have = read_manifest_entries(out)
        if any(e["file"] not in have for e in expected):
            return False
        text = "".join(entry_line(e) for e in expected)
        path = out / MANIFEST
        if not path.exists() or path.read_text() != text:
            iu.atomic_write_text(path, text)
        return True


def vae_fingerprint(vae_dir: Path) -> dict:
    import tensorflow as tf

    ckpt = tf.train.latest_checkpoint(str(vae_dir / "checkpoints"))
    digest = hashlib.sha256((vae_dir / "latents.npz").read_bytes()).hexdigest()
    return {"vae_checkpoint": Path(ckpt).name if ckpt else None,
            "latents_sha256": digest}


def check_or_write_config(out: Path, record: dict):
    path = out / SAMPLER_JSON
    if path.exists():
        old = json.loads(path.read_text())
        for k, v in record.items():
            if old.get(k) != v:
                raise RunError(f"{path}: this folder was sampled with {k}={old.get(k)!r}, the command asks for "
                               f"{k}={v!r}; use another --out (or the folder's own settings)")
        return
    iu.atomic_write_json(path, record)


def expected_entries(config: SamplerConfig, names) -> list[dict]:
    pairs = style_pairs(names, config.styles)
    ts = np.linspace(0.0, 1.0, config.steps)
    return [manifest_entry(p, t, *pairs[p % len(pairs)], names) for p in range(config.pairs) for t in ts]


def sample(config: SamplerConfig, out: Path, shard=(0, 1), quiet: bool = False) -> dict:
    """Write the missing images and manifest lines of this shard. Returns counts."""
    import keras
    from vae_keras import interpolate, load_latents, load_vae

    vae_dir = Path(config.vae)
    vae, vae_config = load_vae(vae_dir)
    latents = load_latents(vae_dir)
    names = [str(n) for n in latents["styles"]]
    pairs = style_pairs(names, config.styles)
    out.mkdir(parents=True, exist_ok=True)
    check_or_write_config(out, {**dataclasses.asdict(config), "vae": str(vae_dir.resolve()),
                                **vae_fingerprint(vae_dir), "style_names": names, "size": vae_config.size})
    ts = np.linspace(0.0, 1.0, config.steps)
    in_manifest = read_manifest_entries(out)
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
            noise = np.concatenate([np.repeat(pair_noise(config, p, vae_config.size, vae.noise_channels),
                                              len(ts), 0) for p in blk])
        images = vae.decode(z, noise)  # the whole block, always: the same batch gives the same bytes
        new_entries = []
        for p, t in missing:
            i = blk.index(p) * config.steps + int(np.flatnonzero(ts == t)[0])
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
    problems = []
    cfg_path = out / SAMPLER_JSON
    if not cfg_path.exists():
        return [f"{cfg_path}: missing"]
    record = json.loads(cfg_path.read_text())
    config = SamplerConfig(**{f.name: record[f.name] for f in dataclasses.fields(SamplerConfig)})
    have = read_manifest_entries(out)
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    d = SamplerConfig(vae="")
    ap.add_argument("--vae", type=Path, help="a trained vae_keras.py run folder (with latents.npz)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--pairs", type=int, default=d.pairs)
    ap.add_argument("--steps", type=int, default=d.steps, help="points per pair, t = 0 ... 1 inclusive")
    ap.add_argument("--interp", choices=("linear", "slerp"), default=d.interp)
    ap.add_argument("--styles", default=d.styles, metavar="A,B", help="the style pair (default: cycle all pairs)")
    ap.add_argument("--temperature", type=float, default=d.temperature)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--batch-size", type=int, default=d.batch_size)
    ap.add_argument("--shard", default="0/1", metavar="i/n", help="write only shard i of n")
    ap.add_argument("--verify", action="store_true", help="check manifest against files; non-zero on a mismatch")
    args = ap.parse_args(argv)
    if args.verify:
        if not args.out.is_dir():
            return iu.fail(f"{args.out}: no such folder")
        problems = verify(args.out)
        for p in problems[:20]:
            print(f"mismatch: {p}", file=sys.stderr)
        if problems:
            return iu.fail(f"{args.out}: {len(problems)} problems", code=1)
        print(f"{args.out}: manifest and files agree")
        return 0
    if args.vae is None:
        return iu.fail("--vae RUN_DIR is required (unless --verify)")
    if args.pairs < 1 or args.steps < 2 or args.batch_size < 1 or args.temperature < 0:
        return iu.fail("need --pairs >= 1, --steps >= 2, --batch-size >= 1 and --temperature >= 0")
    try:
        shard = parse_shard(args.shard)
        config = SamplerConfig(vae=str(args.vae.resolve()), pairs=args.pairs, steps=args.steps, interp=args.interp,
                               styles=args.styles, temperature=args.temperature, seed=args.seed,
                               batch_size=args.batch_size)
        sample(config, args.out, shard)
    except (RunError, ValueError, iu.ImageError) as e:
        return iu.fail(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
