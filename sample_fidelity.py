"""Measure a style-sample folder itself, before any stylizer is trained on it: are the samples diverse, faithful
to each painting, and do they move steadily from style A to style B?

    python sample_fidelity.py --samples runs/demo/samples [--style A.jpg --style B.jpg] [--out OUT.json]

Per t (the manifest's weight of the last style) it prints
- diversity: mean pairwise LPIPS among the samples at that t, next to the same measure among random real crops of
  each painting, cut the way the VAE was trained (crops of the style resized to its --style-size, with its scale
  jitter, flips and rotations) at the samples' size (the VAE's --size, or the sampler's --sample-size); and at
  t=0 and t=1 the near-duplicates: the fraction of sample pairs closer than 95% of real-crop pairs (a few very
  different samples can lift the mean while most are one picture);
- fidelity: the relative Gram error ||mean G(samples) - G_target|| / ||G_A - G_B||, where G_A and G_B are mean Grams
  of many real crops and G_target = (1-t) G_A + t G_B (at t=0 and t=1 next to its floor: the same error of as many
  other real crops, which a perfect sampler scores, since a mean of n crops is noisy too), and a Frechet (W2)
  distance between Gaussians fitted to VGG16 feature vectors of the samples and of real crops (SIFID-like, Shaham
  et al. 2019, on our own VGG16 at relu3_3; printed next to the same distance between two disjoint sets of real
  crops, the floor a perfect sampler reaches);
- steadiness: per pair, the Spearman of t against the Gram distance to G_A, and the largest step / mean step of the
  Gram along t; per t, the pace of the samples' mean Gram: its progress (projection on the line from G_A, 0, to
  G_B, 1: direct mixing's is t) and its energy (norm over the mix's norm: below 1, flatter textures than a mix);
and, as its last line, the whole report as JSON. The styles and crop scale default to those of the VAE named in the
folder's sampler.json; pass --style (repeatable, in the VAE's style order) to measure against other images.

Targets: diversity at t=0 and t=1 >= 0.5x real crops; endpoint relative Gram error <= 0.15; mean per-pair Spearman
>= 0.95 and no step larger than 2x the mean step. `make demo` measures its samples with it
(docs/results-continuum.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

import image_utilities as iu

GRAM_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")  # the stylizer's style layers
GRAM_CHANNELS = {"relu1_2": 64, "relu2_2": 128, "relu3_3": 256, "relu4_3": 512}
FRECHET_LAYER = "relu3_3"
DUPLICATE_PERCENTILE = 5
FLOOR_REPEATS = 20  # random sets of real crops behind the Gram error's floor
REPORT_VERSION = 2  # raised when the report gains measures, so that a cached older report is measured again
TARGETS = {"diversity_ratio": 0.5, "endpoint_gram_error": 0.15, "spearman": 0.95, "step_ratio": 2.0}


# --------------------------------------------------------------------------------------------------------------------
# Statistics

def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """W2 distance between Gaussians fitted to the rows of x and of y: |mu_x - mu_y|^2 + Tr(Cx + Cy - 2 (Cx Cy)^1/2),
    with the trace of the matrix square root taken as the sum of sqrt eigenvalues of Cx^1/2 Cy Cx^1/2 (symmetric)."""
    mx, my = x.mean(0), y.mean(0)
    cx, cy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    w, v = np.linalg.eigh(cx)
    root_x = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.linalg.eigvalsh(root_x @ cy @ root_x)
    return float(((mx - my) ** 2).sum() + np.trace(cx) + np.trace(cy) - 2 * np.sqrt(np.clip(cross, 0, None)).sum())


def gram_vectors(images: np.ndarray, vgg, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Per image: its Grams at GRAM_LAYERS flattened into one vector, and a subsample of its FRECHET_LAYER feature
    vectors (64 positions, fixed seed) for the Frechet distance."""
    from perceptual import gram_matrix

    grams, feats = [], []
    rng = np.random.default_rng(0)
    for s in range(0, len(images), batch_size):
        f = vgg(np.asarray(images[s:s + batch_size], np.float32))
        grams.append(np.concatenate([gram_matrix(f[n]).numpy().reshape(len(f[n]), -1) for n in GRAM_LAYERS], 1))
        deep = f[FRECHET_LAYER].numpy()
        flat = deep.reshape(len(deep), -1, deep.shape[-1])
        pick = rng.choice(flat.shape[1], min(64, flat.shape[1]), replace=False)
        feats.append(flat[:, pick])
    return np.concatenate(grams), np.concatenate(feats)


def error_by_layer(gram: np.ndarray, target: np.ndarray, span: float) -> dict:
    """The relative Gram error split by layer (each layer's part of the gram_vectors vector): their squares sum to
    the square of the whole error, so they say which layer the error is in."""
    out, start = {}, 0
    for name in GRAM_LAYERS:
        end = start + GRAM_CHANNELS[name] ** 2
        out[name] = float(np.linalg.norm(gram[start:end] - target[start:end])) / span
        start = end
    assert start == len(gram), f"Gram vector of {len(gram)} values, layers of {start}"
    return out


def gram_error_floor(real_grams: np.ndarray, reference: np.ndarray, n: int, span: float,
                     repeats: int = FLOOR_REPEATS) -> float:
    """The relative Gram error a perfect sampler scores with `n` samples: the mean Gram of `n` real crops (drawn
    from `real_grams`, crops not behind `reference`) against `reference`, averaged over `repeats` random draws. The
    mean of n crops strays from the painting's mean by about its crops' spread / sqrt(n): 24 samples of a
    painting whose crops differ a lot cannot score 0, and the error of a sampler is what lies above this floor.
    With fewer real crops than samples it draws all the crops it has (a higher floor than n would give)."""
    rng = np.random.default_rng(0)
    n = min(n, len(real_grams))
    errors = [np.linalg.norm(real_grams[rng.choice(len(real_grams), n, replace=False)].mean(0) - reference)
              for _ in range(repeats)]
    return float(np.mean(errors)) / span


def pace(gram: np.ndarray, g_a: np.ndarray, g_b: np.ndarray, target: np.ndarray) -> dict:
    """Where the samples' mean Gram at one t stands on the way from A to B: `progress`, its projection on the
    straight line from G_A (0) to G_B (1), which direct mixing walks at the pace of t; and `energy`, its norm over
    that of the mix at this t, below 1 where the in-between textures are flatter than a mix of the paintings."""
    line = g_b - g_a
    return {"progress": float(np.dot(gram - g_a, line) / np.dot(line, line)),
            "energy": float(np.linalg.norm(gram) / np.linalg.norm(target))}


def pairwise_lpips(images: np.ndarray, max_pairs: int = 300) -> np.ndarray:
    """LPIPS of pairs of distinct images (all pairs, or a fixed random subset of `max_pairs`); each image goes
    through VGG once."""
    from perceptual import shared_lpips

    n = len(images)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    if len(pairs) > max_pairs:
        keep = np.random.default_rng(0).choice(len(pairs), max_pairs, replace=False)
        pairs = [pairs[k] for k in sorted(keep)]
    return shared_lpips().pairwise(np.asarray(images, np.float32), pairs)


def near_duplicates(distances: np.ndarray, real_distances: np.ndarray) -> float:
    """The fraction of sample pairs closer than all but DUPLICATE_PERCENTILE % of real-crop pairs: pairs a viewer
    sees as the same picture. A mean LPIPS can look healthy while most samples are one picture and a few differ a
    lot; this counts the repeats (real crops score DUPLICATE_PERCENTILE % by construction)."""
    return float(np.mean(distances < np.percentile(real_distances, DUPLICATE_PERCENTILE)))


# --------------------------------------------------------------------------------------------------------------------
# Inputs

def read_samples(folder: Path) -> tuple[dict, list[dict]]:
    """sampler.json and the manifest of a sample folder."""
    import sample_folder

    record, entries = sample_folder.read_sampler_json(folder), sample_folder.read_manifest(folder)
    if record is None or not entries:
        missing = sample_folder.SAMPLER_JSON if record is None else sample_folder.MANIFEST
        raise iu.ImageError(folder / missing, "missing or empty: is this a style_sampler.py output folder?")
    return record, entries


def real_crops(styles, vae_config, n: int, seed: int) -> list[np.ndarray]:
    """`n` random crops of each style image, cut as the VAE's training cuts them."""
    from style_images import training_crops

    rng = np.random.default_rng(seed)
    return [training_crops(style, vae_config, rng, n) for style in styles]


def references(styles, vae_config, vgg, crops: int, max_pairs: int):
    """From two disjoint sets of real crops per style (the second gives the floors): each style's mean Gram over
    the first set, the Gram vectors of the second, the feature vectors of both, and the LPIPS of pairs of real
    crops (48 crops)."""
    g_mean, g_second, feats, distances = [], [], [], []
    for r in real_crops(styles, vae_config, 2 * crops, seed=12345):
        g, f = gram_vectors(r, vgg)
        g_mean.append(g[:crops].mean(0))
        g_second.append(g[crops:])
        feats.append(f)
        distances.append(pairwise_lpips(r[:min(len(r), 48)], max_pairs))
    return g_mean, g_second, feats, distances


def measure(folder: Path, style_specs=None, crops: int = 128, max_pairs: int = 300) -> dict:
    from perceptual import vgg_features
    from run_config import read_config
    from style_images import load_styles
    from vae_model import VAEConfig

    record, entries = read_samples(folder)
    # Real crops at the samples' own size (the sampler's --sample-size may differ from the VAE's crops)
    vae_config = read_config(record["vae"], VAEConfig, "VAE")
    vae_config = dataclasses.replace(vae_config, size=int(record.get("size", vae_config.size)))
    specs = style_specs or list(vae_config.styles)
    if len(specs) < 2:
        raise ValueError("need two style images (--style A --style B)")
    styles = load_styles(specs, vae_config.size, vae_config.style_size)
    vgg = vgg_features(sorted(set(GRAM_LAYERS) | {FRECHET_LAYER}), name="fidelity_vgg")

    g_mean, g_second, real_feats, real_pairs = references(styles, vae_config, vgg, crops, max_pairs)
    a, b = 0, len(styles) - 1  # the first and last style: the ends of the continuum
    span = float(np.linalg.norm(g_mean[a] - g_mean[b]))
    floor = [frechet_distance(f[:crops].reshape(-1, f.shape[-1]), f[crops:].reshape(-1, f.shape[-1]))
             for f in real_feats]

    by_t, by_pair = defaultdict(list), defaultdict(list)
    for e in entries:
        w = e["weights"]
        by_t[round(float(w[-1]), 6)].append(e)
        by_pair[e["pair"]].append(e)
    images = {e["file"]: iu.load_image(folder / e["file"]) for e in entries}
    files = sorted(images)
    grams, feats = gram_vectors(np.stack([images[f] for f in files]), vgg)
    gram_of = dict(zip(files, grams))
    feat_of = dict(zip(files, feats))

    per_t = []
    for t in sorted(by_t):
        group = by_t[t]
        g = np.stack([gram_of[e["file"]] for e in group])
        target = (1 - t) * g_mean[a] + t * g_mean[b]
        distances = pairwise_lpips(np.stack([images[e["file"]] for e in group]), max_pairs)
        row = {"t": t, "samples": len(group), "diversity_lpips": float(np.mean(distances)),
               "gram_error_vs_mix": float(np.linalg.norm(g.mean(0) - target)) / span,
               **pace(g.mean(0), g_mean[a], g_mean[b], target)}
        if t in (0.0, 1.0):
            k = a if t == 0.0 else b
            row["real_diversity_lpips"] = float(np.mean(real_pairs[k]))
            row["diversity_ratio"] = row["diversity_lpips"] / row["real_diversity_lpips"]
            row["near_duplicates"] = near_duplicates(distances, real_pairs[k])
            f = np.concatenate([feat_of[e["file"]] for e in group])
            row["frechet"] = frechet_distance(f, real_feats[k][:crops].reshape(-1, f.shape[-1]))
            row["frechet_real_floor"] = floor[k]
            row["gram_error_by_layer"] = error_by_layer(g.mean(0), target, span)
            row["gram_error_real_floor"] = gram_error_floor(g_second[k], g_mean[k], len(group), span)
        per_t.append(row)

    spearmans, step_ratios = steadiness(by_pair, gram_of, g_mean[a])
    return {"samples": str(folder), "styles": specs, "size": vae_config.size, "real_crops": crops, "per_t": per_t,
            "summary": summarize(per_t, floor[a], floor[b], spearmans, step_ratios),
            "per_pair": {"spearman": spearmans, "step_ratio": step_ratios}}


def summarize(per_t: list[dict], floor_a: float, floor_b: float, spearmans, step_ratios) -> dict:
    """The report's summary: the measures at t = 0 and 1, the pace, the steadiness over the pairs, and which of
    TARGETS are met."""
    ends = {row["t"]: row for row in per_t}
    summary = {
        "diversity_ratio_t0": ends[0.0]["diversity_ratio"], "diversity_ratio_t1": ends[1.0]["diversity_ratio"],
        "near_duplicates_t0": ends[0.0]["near_duplicates"], "near_duplicates_t1": ends[1.0]["near_duplicates"],
        "gram_error_t0": ends[0.0]["gram_error_vs_mix"], "gram_error_t1": ends[1.0]["gram_error_vs_mix"],
        "gram_error_floor_t0": ends[0.0]["gram_error_real_floor"],
        "gram_error_floor_t1": ends[1.0]["gram_error_real_floor"],
        "gram_error_by_layer_t0": ends[0.0]["gram_error_by_layer"],
        "gram_error_by_layer_t1": ends[1.0]["gram_error_by_layer"],
        "frechet_t0": ends[0.0]["frechet"], "frechet_t1": ends[1.0]["frechet"],
        "frechet_floor_A": floor_a, "frechet_floor_B": floor_b,
        "frechet_vs_floor_t0": ends[0.0]["frechet"] / floor_a, "frechet_vs_floor_t1": ends[1.0]["frechet"] / floor_b,
        "progress_at_half": next((r["progress"] for r in per_t if r["t"] == 0.5), None),
        "energy_min": float(min(r["energy"] for r in per_t)),
        "spearman_mean": float(np.mean(spearmans)), "spearman_min": float(np.min(spearmans)),
        "step_ratio_max": float(np.max(step_ratios)), "step_ratio_mean": float(np.mean(step_ratios)),
        "pairs": len(spearmans)}
    summary["targets_met"] = {
        "diversity": min(summary["diversity_ratio_t0"], summary["diversity_ratio_t1"]) >= TARGETS["diversity_ratio"],
        "endpoint_gram_error": max(summary["gram_error_t0"], summary["gram_error_t1"])
        <= TARGETS["endpoint_gram_error"],
        "spearman": summary["spearman_mean"] >= TARGETS["spearman"],
        "steps": summary["step_ratio_max"] <= TARGETS["step_ratio"]}
    return summary


def measure_styles(folder: Path, crops: int = 64, max_pairs: int = 100) -> dict:
    """The measures of a folder sampled from a VAE of N >= 2 styles, per style and per pair of styles: each style's
    pure samples (weight 1, the ends of its walks) against its real crops (diversity ratio, near-duplicates,
    relative endpoint Gram error and its floor), and each pair walk's steadiness (Spearman of t against the Gram
    distance to its first style, largest step / mean step). The Gram errors are relative to the root mean square
    distance between the styles' mean Grams (for two styles, ||G_A - G_B||, as `measure`)."""
    from perceptual import vgg_features
    from run_config import read_config
    from style_images import load_styles, style_names
    from vae_model import VAEConfig

    record, entries = read_samples(folder)
    vae_config = read_config(record["vae"], VAEConfig, "VAE")
    vae_config = dataclasses.replace(vae_config, size=int(record.get("size", vae_config.size)))
    names = style_names(vae_config.styles)
    styles = load_styles(vae_config.styles, vae_config.size, vae_config.style_size)
    vgg = vgg_features(sorted(set(GRAM_LAYERS) | {FRECHET_LAYER}), name="fidelity_vgg")
    g_mean, g_second, _, real_pairs = references(styles, vae_config, vgg, crops, max_pairs)
    span = float(np.sqrt(np.mean([np.sum((g_mean[i] - g_mean[j]) ** 2)
                                  for i in range(len(styles)) for j in range(i + 1, len(styles))])))
    images = {e["file"]: iu.load_image(folder / e["file"]) for e in entries}
    files = sorted(images)
    gram_of = dict(zip(files, gram_vectors(np.stack([images[f] for f in files]), vgg)[0]))
    per_style = {}
    for k, name in enumerate(names):
        pure = [e["file"] for e in entries if e["weights"][k] > 1 - 1e-6]
        if len(pure) < 2:
            continue
        distances = pairwise_lpips(np.stack([images[f] for f in pure]), max_pairs)
        error = float(np.linalg.norm(np.mean([gram_of[f] for f in pure], 0) - g_mean[k])) / span
        per_style[name] = {"samples": len(pure), "diversity_ratio": float(np.mean(distances) / np.mean(real_pairs[k])),
                           "near_duplicates": near_duplicates(distances, real_pairs[k]), "gram_error": error,
                           "gram_error_floor": gram_error_floor(g_second[k], g_mean[k], len(pure), span)}
    per_pair = defaultdict(lambda: {"spearman": [], "step_ratio": []})
    for _, walk in sorted(group_by(entries, "pair").items()):
        first, last = (names.index(n) for n in walk[0]["styles"])  # the walk goes from the first to the last
        rho, step = steadiness({0: walk}, gram_of, g_mean[first], key=lambda e: e["t"])
        per_pair[f"{names[first]}-{names[last]}"]["spearman"] += rho
        per_pair[f"{names[first]}-{names[last]}"]["step_ratio"] += step
    pairs = {k: {"spearman": float(np.mean(v["spearman"])), "step_ratio_max": float(np.max(v["step_ratio"])),
                 "walks": len(v["spearman"])} for k, v in per_pair.items()}
    summary = {"styles": len(names), "pairs": len(pairs),
               "diversity_ratio_min": float(min(r["diversity_ratio"] for r in per_style.values())),
               "gram_error_max": float(max(r["gram_error"] for r in per_style.values())),
               "gram_error_mean": float(np.mean([r["gram_error"] for r in per_style.values()])),
               "spearman_min": float(min(r["spearman"] for r in pairs.values())),
               "step_ratio_max": float(max(r["step_ratio_max"] for r in pairs.values()))}
    return {"samples": str(folder), "styles": names, "size": vae_config.size, "real_crops": crops,
            "per_style": per_style, "per_pair": pairs, "summary": summary}


def group_by(entries, key) -> dict:
    out = defaultdict(list)
    for e in entries:
        out[e[key]].append(e)
    return out


def measure_cached(folder: Path, style_specs=None, crops: int = 128, max_pairs: int = 300) -> dict:
    """measure(), kept in FOLDER/sample_fidelity.json with what it was measured from (the report's version, the
    manifest's hash, the styles, the crop count and the pair cap) under "measured_from": a call on an unchanged
    folder with the same arguments reads it back instead of measuring again (the multi-style experiment measures
    many folders)."""
    import sample_folder

    key = {"version": REPORT_VERSION, "manifest_sha256": sample_folder.manifest_sha256(folder),
           "styles": list(style_specs or []),
           "crops": crops, "max_pairs": max_pairs}
    cache = folder / "sample_fidelity.json"
    try:
        report = json.loads(cache.read_text())
    except (OSError, json.JSONDecodeError):
        report = {}
    if isinstance(report, dict) and report.get("measured_from") == key:
        return report
    report = {**measure(folder, style_specs, crops, max_pairs), "measured_from": key}
    iu.atomic_write_json(cache, report)
    return report


def steadiness(by_pair: dict, gram_of: dict, g_a: np.ndarray, key=lambda e: e["weights"][-1]) \
        -> tuple[list[float], list[float]]:
    """Per pair: the Spearman of t (`key` of an entry; by default the weight of the last style) against the Gram
    distance to G_A, and the largest step / mean step along t."""
    from stylizer_eval import spearman

    spearmans, step_ratios = [], []
    for _, group in sorted(by_pair.items()):
        group = sorted(group, key=key)
        g = np.stack([gram_of[e["file"]] for e in group])
        spearmans.append(spearman([key(e) for e in group], np.linalg.norm(g - g_a, axis=1)))
        steps = np.linalg.norm(np.diff(g, axis=0), axis=1)
        step_ratios.append(float(steps.max() / max(steps.mean(), 1e-12)))
    return spearmans, step_ratios


def format_table(report: dict) -> str:
    lines = ["| t | samples | diversity (LPIPS) | real crops | ratio | Gram error vs mix | progress | energy | Frechet "
             "| real floor |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["per_t"]:
        def f(key, fmt="{:.3f}"):
            return fmt.format(r[key]) if key in r else "-"
        lines.append(f"| {r['t']:.3f} | {r['samples']} | {f('diversity_lpips')} | {f('real_diversity_lpips')} | "
                     f"{f('diversity_ratio', '{:.2f}x')} | {f('gram_error_vs_mix')} | {f('progress', '{:.2f}')} | "
                     f"{f('energy', '{:.2f}')} | {f('frechet', '{:.1f}')} | "
                     f"{f('frechet_real_floor', '{:.1f}')} |")
    s = report["summary"]
    lines.append("")
    lines.append(f"near-duplicate sample pairs (closer than {100 - DUPLICATE_PERCENTILE}% of real-crop pairs): "
                 f"t=0 {s['near_duplicates_t0']:.0%}, t=1 {s['near_duplicates_t1']:.0%} (real crops: "
                 f"{DUPLICATE_PERCENTILE}%)")
    for t in (0, 1):
        lines.append(f"Gram error at t={t} by layer: " + ", ".join(
            f"{name} {v:.3f}" for name, v in s[f"gram_error_by_layer_t{t}"].items()))
    lines.append(f"Gram error of as many real crops (the floor a perfect sampler scores): "
                 f"t=0 {s['gram_error_floor_t0']:.3f}, t=1 {s['gram_error_floor_t1']:.3f}")
    lines.append(f"\nsteadiness over {s['pairs']} pairs: Spearman(t, Gram distance to A) mean {s['spearman_mean']:.3f}"
                 f" (min {s['spearman_min']:.3f}); largest step / mean step: max {s['step_ratio_max']:.2f}, "
                 f"mean {s['step_ratio_mean']:.2f}")
    met = s["targets_met"]
    lines.append("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in met.items()))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=iu.HelpFormatter)
    ap.add_argument("--samples", type=Path, required=True, help="a style_sampler.py output folder")
    ap.add_argument("--style", action="append", default=[], metavar="IMG",
                    help="style images in the VAE's order (default: the VAE's own styles)")
    ap.add_argument("--crops", type=int, default=128, help="real crops per style for the references")
    ap.add_argument("--out", type=Path, help="also write the whole report here (JSON)")
    ap.set_defaults(run=measure_command)
    return ap


def measure_command(args) -> int:
    report = measure(args.samples, args.style or None, args.crops)
    print(format_table(report))
    if args.out:
        iu.atomic_write_json(args.out, report)
    print(json.dumps(report["summary"]))
    return 0


def main(argv=None) -> int:
    return iu.run_main(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
