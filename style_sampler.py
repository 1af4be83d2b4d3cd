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

The samples are drawn at the VAE's --style-size (the stylizer's --size) by default, or `--sample-size PX` pixels
square; a texture-decoder VAE can draw any multiple of 8 (it is fully convolutional in its noise image), a seed
decoder only its crop size. A Gram matrix depends on the image size as well as on the strokes (VGG's zero padding
weighs the border, most at relu4_3), and the stylizer compares its output's Grams with the samples'.

The sample folder's files (images, manifest.jsonl, sampler.json, grams.npz) are read and written only through
sample_folder.py.

A rerun writes only what is missing and produces byte-identical files: decode batches are fixed blocks of pair
indices, so an image's bytes never depend on what was already on disk or on the shard. `--shard i/n` writes the
blocks k with k % n == i; the shards together equal one run, even writing into the same folder at once.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import sys
import time
from pathlib import Path

import numpy as np

import image_utilities as iu
from run_config import RunError, add_config_args, apply_recipe
from run_dir import FolderLock
from sample_folder import (MANIFEST, SAMPLER_JSON, append_manifest, canonicalise_manifest, check_or_write_config,
                           entry_line, manifest_by_file, read_sampler_json)


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
    size: int = 0  # --sample-size; 0: the VAE's style size (texture decoder), else its crop size


DRAWS = ("gaussian", "posterior")


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
    from each style's Gaussian, with the covariance in latents.npz (VAEs since 2026-11-29; older files give
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
    """The samples' size: --sample-size, or by default the scale the stylizer will train at (the VAE's --style-size,
    for a texture decoder, which draws any multiple of TEXTURE_MULTIPLE), else the VAE's crop size. Raises RunError
    when the VAE cannot draw at the size asked for."""
    from vae_model import TEXTURE_MULTIPLE

    size = config.size
    if not size:
        drawn_at_style_size = vae_config.decoder == "texture" and vae_config.style_size
        size = vae_config.style_size if drawn_at_style_size else vae_config.size
        if size % TEXTURE_MULTIPLE:
            low = size - size % TEXTURE_MULTIPLE
            raise RunError(f"{vae_dir}: its style size {size} is not a multiple of {TEXTURE_MULTIPLE}, which the "
                           f"texture decoder draws: give --sample-size {low} or {low + TEXTURE_MULTIPLE}")
    if size == vae_config.size:
        return size
    if vae_config.decoder != "texture":
        raise RunError(f"{vae_dir}: --sample-size {size}: a {vae_config.decoder} decoder draws only its crop "
                       f"size ({vae_config.size}); a texture-decoder VAE draws any multiple of {TEXTURE_MULTIPLE}")
    if size % TEXTURE_MULTIPLE:
        raise RunError(f"--sample-size {size}: the texture decoder draws multiples of {TEXTURE_MULTIPLE}")
    return size


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
                    help="draw PX x PX samples (a texture-decoder VAE draws any multiple of 8; give the stylizer's "
                         "--size); 0: the VAE's --style-size, the stylizer's scale (its crop size for a seed decoder)")
    ap.add_argument("--verify", action="store_true", help="check manifest against files; exit 1 on a mismatch")
    add_config_args(ap, SamplerConfig, "sampler")
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
    return iu.run_main(build_parser(), argv, prepare=apply_recipe)


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
