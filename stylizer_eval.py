"""Measuring the stylizer: the optimisation baseline it replaces, and numbers across strengths.

- `optimize_image`: Gatys, Ecker & Bethge 2016 ("Image Style Transfer Using Convolutional Neural Networks", CVPR
  2016; arXiv 1508.06576): optimise the pixels themselves against the same VGG16 losses, the quality and speed
  reference for a feed-forward net. Several styles blend their Grams, like neural-style's -style_blend_weights.
- `evaluate`: stylize held-out content at evenly spaced strengths and report, per strength, the style loss to each
  endpoint style, the content loss, LPIPS (Zhang et al. 2018, arXiv 1801.03924) to the content and to the strength-0
  and strength-1 outputs, and images/s; `spearman` of strength against those; `plot_evaluation` draws the curves.
"""
from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

import image_utilities as iu
from perceptual import LPIPS, content_loss, gram_matrix, style_loss, total_variation_loss, vgg_features
from run_config import RunError
from stylizer_data import STYLE_LAYERS, compute_grams, load_sample_styles, style_image_grams
from stylizer_net import strength_weights


def optimize_image(content: np.ndarray, styles: list[np.ndarray], blend, iters: int, content_weight: float,
                   style_weight: float, tv_weight: float, lr: float = 0.02, content_layer: str = "relu2_2",
                   log_every: int = 50):
    """Optimise the pixels of an image (initialised from the content, Adam) against the content's features and the
    blend of the styles' Grams. Returns (image, history of the losses)."""
    import keras

    layers = list(STYLE_LAYERS)
    vgg = vgg_features(sorted(set(layers) | {content_layer}), name="optimize_vgg")
    grams = [compute_grams([s], vgg, layers) for s in styles]
    blend = np.asarray(blend, np.float32) / np.sum(blend)
    target_grams = {n: tf.constant(sum(b * g[n] for b, g in zip(blend, grams))) for n in layers}
    target_content = vgg(content[None])[content_layer]
    x = tf.Variable(content[None].astype(np.float32))
    optimizer = keras.optimizers.Adam(lr)

    def losses(img):
        feats = vgg(img)
        c = content_loss(feats[content_layer], target_content)[0]
        s = style_loss({n: gram_matrix(feats[n]) for n in layers}, target_grams, layers)[0]
        tv = total_variation_loss(img)[0]
        return c, s, tv

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            c, s, tv = losses(x)
            loss = content_weight * c + style_weight * s + tv_weight * tv
        optimizer.apply_gradients([(tape.gradient(loss, x), x)])
        x.assign(tf.clip_by_value(x, 0.0, 1.0))
        return loss, c, s, tv

    history = []
    c, s, tv = losses(x)
    history.append({"iter": 0, "content": float(c), "style": float(s), "tv": float(tv)})
    for i in range(1, iters + 1):
        loss, c, s, tv = step()
        if i % log_every == 0 or i == iters:
            history.append({"iter": i, "loss": float(loss), "content": float(c), "style": float(s), "tv": float(tv)})
            print(f"iter {i}/{iters}  loss {float(loss):.4g}  content {float(c):.4g}  style {float(s):.4g}",
                  flush=True)
    return x.numpy()[0], history


# --------------------------------------------------------------------------------------------------------------------
# Evaluation: turn "looks good" into numbers

def spearman(a, b) -> float:
    """Spearman rank correlation (ties get their average rank)."""
    def ranks(v):
        v = np.asarray(v, np.float64)
        order = np.argsort(v, kind="mergesort")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=np.float64)
        for value in np.unique(v):  # average ranks of ties
            tie = v == value
            r[tie] = r[tie].mean()
        return r
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def endpoint_grams(config, vgg, layers) -> list[dict]:
    """Gram targets of the endpoint styles A (strength 0, the first style) and B (strength 1, the last): the style
    images, or the mean Gram of the samples that are purely that style (weights [1, 0, ...] or [..., 0, 1])."""
    if config.style_images:
        return style_image_grams(config.style_images, config.size, vgg, layers)
    weights, grams, _ = load_sample_styles(Path(config.samples), vgg, layers, quiet=True)
    out = []
    for k in sorted({0, weights.shape[1] - 1}):
        pure = np.isclose(weights[:, k], 1.0)
        if not pure.any():
            raise RunError(f"{config.samples}: no samples purely of style {k} (t=0 or t=1) to evaluate against")
        out.append({n: grams[n][pure].mean(0, keepdims=True) for n in layers})
    return out


def content_images(folder, size: int, limit: int) -> np.ndarray:
    """Square crops of the first `limit` images of `folder`, skipping unreadable ones."""
    contents = []
    for f in iu.list_images(folder)[:limit]:
        try:
            contents.append(iu.square_crop(iu.load_image(f), size))
        except iu.ImageError as e:
            print(f"skipped {e}", file=sys.stderr)
    if not contents:
        raise RunError(f"{folder}: no readable content images")
    return np.stack(contents)


def evaluate(net, config, names, content_dir, strengths: int = 11, limit: int = 16) -> dict:
    """Numbers per strength (see the module docstring) for the run's `net`, with its `config` and style `names`."""
    layers = list(STYLE_LAYERS)
    vgg = vgg_features(sorted(set(layers) | {config.content_layer}), name="eval_vgg")
    ends = endpoint_grams(config, vgg, layers)
    batch = content_images(content_dir, config.size, limit)
    lpips = LPIPS()
    ts = np.linspace(0.0, 1.0, strengths)
    outputs, rows = [], []
    for t in ts:
        w = strength_weights(len(names), [t])[0]
        t0 = time.perf_counter()
        out = np.asarray(net({"image": batch, "weights": np.repeat(w[None], len(batch), 0)}, training=False))
        seconds = time.perf_counter() - t0
        outputs.append(out)
        feats = vgg(out)
        g = {n: gram_matrix(feats[n]) for n in layers}
        row = {"strength": float(t), "images_per_s": len(batch) / seconds,
               "content_loss": float(tf.reduce_mean(content_loss(feats[config.content_layer],
                                                                 vgg(batch)[config.content_layer]))),
               "lpips_to_content": float(np.mean(lpips(out, batch)))}
        for k, e in enumerate(ends):
            row[f"style_loss_to_{'AB'[k]}"] = float(tf.reduce_mean(style_loss(g, e, layers)))
        rows.append(row)
    for row, out in zip(rows, outputs):
        row["lpips_to_strength_0"] = float(np.mean(lpips(out, outputs[0])))
        row["lpips_to_strength_1"] = float(np.mean(lpips(out, outputs[-1])))
    result = {"styles": names, "content_images": len(batch), "size": config.size, "per_strength": rows}
    if len(ends) > 1:
        result["spearman_strength_vs_style_loss_to_A"] = spearman(ts, [r["style_loss_to_A"] for r in rows])
        result["spearman_strength_vs_lpips_to_strength_0"] = spearman(ts, [r["lpips_to_strength_0"] for r in rows])
    return result


def plot_evaluation(result: dict, out: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["per_strength"]
    ts = [r["strength"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for key in [k for k in rows[0] if k.startswith("style_loss_to_")]:
        axes[0].plot(ts, [r[key] for r in rows], marker="o", label=key.replace("_", " "))
    axes[0].set_title("style loss to each endpoint")
    axes[1].plot(ts, [r["lpips_to_strength_0"] for r in rows], marker="o", label="LPIPS to strength 0")
    axes[1].plot(ts, [r["lpips_to_strength_1"] for r in rows], marker="o", label="LPIPS to strength 1")
    axes[1].plot(ts, [r["lpips_to_content"] for r in rows], marker="o", label="LPIPS to content")
    axes[1].set_title("perceptual distance")
    axes[2].plot(ts, [r["content_loss"] for r in rows], marker="o")
    axes[2].set_title("content loss")
    for ax in axes:
        ax.set_xlabel("strength (weight of the last style)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    iu.atomic_write_bytes(out, buf.getvalue())
