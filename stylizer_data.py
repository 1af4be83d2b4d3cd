"""The styles the stylizer trains on: style targets (Gram matrices with their conditioning weights). Its content
photos: content_stream.py.

- `StyleTargets`: a batch of (style weights, Gram targets) from one of three sources: a style-sample folder (a
  sample per example: its manifest weights are both the conditioning input and the choice of its Gram target), one
  style image, or several style images mixed in pairs by a uniform strength (direct Gram mixing).
- `load_sample_styles`: weights and Grams of every sample, through the folder's Gram cache (style_sampler.py reads
  and writes it); `compute_grams`, `style_image_grams`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import image_utilities as iu
import sample_folder
import sample_folder
from run_config import RunError
from stylizer_net import strength_weights

STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


def compute_grams(images, vgg, layers, batch_size: int = 8) -> dict[str, np.ndarray]:
    from perceptual import gram_matrix

    out = {name: [] for name in layers}
    for start in range(0, len(images), batch_size):
        feats = vgg(np.stack(images[start:start + batch_size]))
        for name in layers:
            out[name].append(gram_matrix(feats[name]).numpy())
    return {name: np.concatenate(v) for name, v in out.items()}


def load_sample_styles(folder: Path, vgg, layers, quiet=False):
    """Style weights [N, S], Gram targets {layer: [N, C, C]} and style names of a sample folder, from its Gram cache
    when that matches the manifest, else computed (and cached). Unreadable samples are skipped and counted."""
    folder = Path(folder)
    if not (folder / sample_folder.MANIFEST).exists():
        raise RunError(f"{folder}: not a style sample folder (no {sample_folder.MANIFEST}); run style_sampler.py "
                       "first")
    entries = sample_folder.read_manifest(folder)
    if not entries:
        raise RunError(f"{folder / sample_folder.MANIFEST}: empty")
    cached = sample_folder.read_gram_cache(folder, layers)
    if cached is not None:
        return cached
    images, weights, bad = [], [], 0
    for e in entries:
        try:
            images.append(iu.load_image(folder / e["file"]))
            weights.append(e["weights"])
        except iu.ImageError as err:
            print(f"skipped {err}", file=sys.stderr)
            bad += 1
    if not images:
        raise RunError(f"{folder}: no readable style samples")
    if not quiet:
        print(f"computing Gram matrices of {len(images)} style samples ({bad} unreadable skipped) -> "
              f"{folder / sample_folder.GRAM_CACHE}", flush=True)
    grams = compute_grams(images, vgg, layers)
    names = sample_folder.style_names(folder, len(weights[0]))
    weights = np.asarray(weights, np.float32)
    sample_folder.write_gram_cache(folder, layers, weights, grams, names)
    return weights, grams, names


def style_image_grams(paths, size: int, vgg, layers):
    """Gram targets of style images resized so their shorter side is `size`."""
    images = [iu.resize_short_side(iu.load_image(p), size) for p in paths]
    return [compute_grams([im], vgg, layers) for im in images]


def style_crop_grams(config, vgg, layers, crops: int = 256) -> list[dict]:
    """Per style image, the Grams of `crops` random style_crop_size crops of it resized so its shorter side is
    `size`: the real-crop control of the VAE route (the crops a VAE trained with --style-size SIZE sees)."""
    from vae_model import VAEConfig
    from style_images import training_crops

    cut = VAEConfig(size=config.style_crop_size)  # the VAE's crop size, scale jitter, flips and turns
    rng = np.random.default_rng([config.seed, 2718])
    out = []
    for path in config.style_images:
        image = iu.resize_short_side(iu.load_image(path), config.size)
        out.append(compute_grams(list(training_crops(image, cut, rng, crops)), vgg, layers))
    return out


def sample_style_grams(config, vgg, layers) -> list[dict]:
    """The whole-image Grams, at the stylizer's --size, of the style images of the VAE a sample folder was drawn
    from (its sampler.json names the VAE run, whose config.json names the images), in the samples' style order."""
    from run_config import read_config
    from style_images import load_styles
    from vae_model import VAEConfig

    record = sample_folder.read_sampler_json(config.samples) or {}
    if "vae" not in record:
        raise RunError(f"{config.samples}: its {sample_folder.SAMPLER_JSON} names no VAE, whose paintings "
                       "--anchor-ends needs")
    vae_config = read_config(record["vae"], VAEConfig, "VAE")
    images = load_styles(vae_config.styles, 1, config.size)  # shorter side --size, as style_image_grams has them
    return [compute_grams([im], vgg, layers) for im in images]


def pure_samples(weights: np.ndarray) -> np.ndarray:
    """[N, S] booleans: which samples are of style s alone (its weight 1, the ends of a pair walk)."""
    return weights > 1.0 - 1e-6


def anchored(weights: np.ndarray, grams: dict, paintings: list[dict]) -> dict:
    """Sample Grams moved so that each style's pure samples (weight 1) have the painting's Gram as their mean: every
    sample gains its weights' mix of (painting - mean of the style's pure samples). Along a pair walk the VAE's way
    between the two ends stays; only the ends, and the straight line between them, move onto the paintings."""
    if len(paintings) != weights.shape[1]:
        raise RunError(f"the samples weigh {weights.shape[1]} styles, their VAE has {len(paintings)} style images")
    out = {}
    for name, g in grams.items():
        shift = np.zeros((weights.shape[1], *g.shape[1:]), np.float64)
        for k, painting in enumerate(paintings):
            if not weights[:, k].any():  # a style of the VAE this folder never draws (style_sampler --pair)
                continue
            pure = pure_samples(weights)[:, k]
            if not pure.any():
                raise RunError(f"style {k} has no pure samples (t = 0 or 1) to anchor")
            shift[k] = painting[name][0] - g[pure].mean(0)
        out[name] = (g + np.einsum("ns,scd->ncd", weights, shift)).astype(g.dtype)
    return out


def mean_by_weights(weights: np.ndarray, grams: dict) -> dict:
    """Each sample's Grams replaced by the mean over the samples with the same style weights (the same t of a pair
    walk): {layer: [N, C, C]}, row for row."""
    _, group = np.unique(weights, axis=0, return_inverse=True)
    group = group.ravel()
    out = {}
    for name, g in grams.items():
        sums = np.zeros((group.max() + 1, *g.shape[1:]), np.float64)
        np.add.at(sums, group, g)
        out[name] = (sums / np.bincount(group)[:, None, None])[group].astype(g.dtype)
    return out


class StyleTargets:
    """Draws (conditioning weights, Gram targets) for a batch. Three sources share this code: style samples (a sample
    per example; `config.samples`), one style image, or several style images mixed by a uniform strength
    (`config.style_images`: two from the first to the last, more in a random pair per example). With
    `config.style_crop_size` an image's target is the Gram of one of its random crops (drawn per example), and with
    `strength_draw="ends"` images are mixed only at strengths 0 and 1. With
    `end_share` F, a share F of the examples is drawn at a pure style (strength 0 or 1, or a sample of one style). With
    `style_targets="mean"` a sample's (crop's) target is the mean Gram of all samples with its style weights (all
    crops of its image) instead of its own: the squared Gram loss over random targets has its optimum at their mean
    anyway, and the mean reaches it without the targets' noise."""

    def __init__(self, config, vgg, layers):
        self.layers = layers
        if config.samples:
            self.weights, self.grams, self.names = load_sample_styles(Path(config.samples), vgg, layers)
            self.mode = "samples"
            if config.style_targets == "mean":
                self.grams = mean_by_weights(self.weights, self.grams)
            if config.anchor_ends:
                self.grams = anchored(self.weights, self.grams, sample_style_grams(config, vgg, layers))
        else:
            if config.style_crop_size:
                self.image_grams = style_crop_grams(config, vgg, layers)
                if config.style_targets == "mean":
                    self.image_grams = [{n: g[n].mean(0, keepdims=True) for n in layers} for g in self.image_grams]
            else:
                self.image_grams = style_image_grams(config.style_images, config.size, vgg, layers)
            self.names = [Path(p).stem for p in config.style_images]
            self.mode = "images"
        self.ends_only = config.strength_draw == "ends"
        self.end_share = config.end_share
        self.num_styles = len(self.names)
        if self.mode == "samples" and self.end_share:
            self.pure = np.flatnonzero(pure_samples(self.weights).any(1))
            if not len(self.pure):
                raise RunError(f"{config.samples}: --end-share needs samples of a single style (t = 0 or 1); "
                               "this folder has none")

    def pick(self, k: int, rng: np.random.Generator, batch_size: int) -> dict:
        """Style k's Gram targets for a batch: its whole-image Gram, or one random crop's Gram per example."""
        grams = self.image_grams[k]
        count = len(grams[self.layers[0]])
        idx = rng.integers(0, count, batch_size) if count > 1 else np.zeros(batch_size, int)
        return {name: grams[name][idx] for name in self.layers}

    def batch(self, rng: np.random.Generator, batch_size: int):
        if self.mode == "samples":
            idx = rng.integers(0, len(self.weights), batch_size)
            if self.end_share:
                at_end = rng.uniform(size=batch_size) < self.end_share
                idx = np.where(at_end, self.pure[rng.integers(0, len(self.pure), batch_size)], idx)
            return self.weights[idx], {name: self.grams[name][idx] for name in self.layers}
        if self.num_styles == 1:
            return np.ones((batch_size, 1), np.float32), self.pick(0, rng, batch_size)
        if self.ends_only:
            t = rng.integers(0, 2, batch_size).astype(np.float32)
        else:
            t = rng.uniform(0.0, 1.0, batch_size).astype(np.float32)
            if self.end_share:
                at_end = rng.uniform(size=batch_size) < self.end_share
                t = np.where(at_end, rng.integers(0, 2, batch_size), t).astype(np.float32)
        picks = [self.pick(k, rng, batch_size) for k in range(self.num_styles)]
        if self.num_styles == 2:  # the strength runs from the first style to the last
            w = strength_weights(2, t)
        else:  # a random pair of styles per example, as the VAE's samples walk between pairs
            a = rng.integers(0, self.num_styles, batch_size)
            b = (a + rng.integers(1, self.num_styles, batch_size)) % self.num_styles
            w = np.zeros((batch_size, self.num_styles), np.float32)
            w[np.arange(batch_size), a] = 1.0 - t
            w[np.arange(batch_size), b] = t
        grams = {name: np.einsum("bs,sbcd->bcd", w, np.stack([pk[name] for pk in picks])).astype(np.float32)
                 for name in self.layers}
        return w, grams
