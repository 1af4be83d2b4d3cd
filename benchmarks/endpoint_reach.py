"""How much of a VAE's endpoint Gram error can be removed after training? A trained VAE's samples of each style miss
the mean Gram of the real crops (sample_fidelity.py's endpoint error). This asks where that error lives,
by gradient descent on the squared error itself, through VGG16, from the trained VAE:

- `means`: only each style's mean code moves (the D numbers the sampler draws around; the covariance, the decoder and
  its noise stay). If the error fell here, it would be the sampler's Gaussian, and a calibrated latents.npz would
  fix it for free.
- `decoder`: the decoder's weights move (the codes stay): a short fine-tune at the samples' size, with the endpoint
  error as its only loss. What this cannot remove in a few steps needs another decoder or a longer training.

Draws are made as style_sampler.py makes them (each style's Gaussian in latents.npz, one noise image per draw) at
`--sample-size` (the sampler's; default the VAE's crop size), and compared with real crops of the style cut as VAE
training cuts them, at that size, over relu1_2 ... relu4_3 (the stylizer's style layers). The error printed is
||mean G(draws) - G(real crops)|| / ||G_A - G_B|| (sample_fidelity.py's for a two-style VAE; with more styles the
denominator is the root mean square over pairs of styles), on fixed held-out draws (4 x --batch-size per style)
before and after. Nothing is written to the VAE's folder.

    python benchmarks/endpoint_reach.py --vae runs/demo/vae --sample-size 128 [--what means,decoder]

Last line: JSON {what: {"before": [per style], "after": [per style], "seconds": s, "moved": [per style] (means; the
decoder: one L2 norm), "spread": [per style] (means: the root of each Gaussian's covariance trace)}}.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import image_utilities as iu  # noqa: E402
from run_config import RunError  # noqa: E402

LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")  # the stylizer's style layers, sample_fidelity's GRAM_LAYERS
WHATS = ("means", "decoder")


@dataclasses.dataclass(frozen=True)
class Settings:
    size: int  # the draws' size, and the real crops'
    steps: int = 40
    batch_size: int = 8  # draws per style and step (even: two halves)
    crops: int = 64  # real crops per style for its target mean Gram
    lr_means: float = 0.05
    lr_decoder: float = 1e-3
    seed: int = 0


def target_grams(styles, vae_config, settings: Settings, vgg) -> list[dict]:
    """Per style, {layer: mean Gram [C, C]} over `settings.crops` real crops cut at the draws' size."""
    from vae_keras import mean_style_grams

    cut = dataclasses.replace(vae_config, size=settings.size, seed=vae_config.seed + settings.seed)
    grams = mean_style_grams(styles, cut, vgg, settings.crops, LAYERS)
    return [{n: grams[n][k] for n in LAYERS} for k in range(len(styles))]


def reach(vae, latents: dict, targets: list[dict], settings: Settings, vgg, what: str) -> dict:
    """Descend on the endpoint error, moving `what` (means or decoder); the held-out error per style before and
    after. The loss per style is the product of the errors of the two halves of a step's draws (its expectation is
    the squared error of the mean Gram without the draws' own variance, which the plain square would add and which
    the descent could lower by making the draws alike), over the squared distance between the styles' targets."""
    import keras
    import tensorflow as tf

    from perceptual import gram_matrix
    from vae_latents import latent_spread
    from vae_model import decoder_noise

    s, count = settings, len(targets)
    spans = [sum(float(np.sum((targets[i][n] - targets[j][n]) ** 2)) for n in LAYERS)
             for i in range(count) for j in range(i + 1, count)]
    span2 = float(np.mean(spans)) if spans else 1.0
    means = np.asarray(latents["mean"], np.float32)
    dim = means.shape[1]
    offset = tf.Variable(tf.zeros_like(means), name="mean_offset")
    goal = {n: tf.constant(np.stack([t[n] for t in targets])) for n in LAYERS}
    channels = max(1, vae.noise_channels)

    def draws(generator, n):
        """Codes from each style's Gaussian ([S * n, D], style by style) and a noise image per code."""
        z = np.concatenate([means[k] + latent_spread(latents, k, generator.standard_normal((n, dim)))
                            for k in range(count)]).astype(np.float32)
        return z, decoder_noise(generator, count * n, s.size, channels)

    def mean_grams(z, noise, halves: int):
        """{layer: [S, halves, C, C]}: the mean Gram of each style's draws, split into `halves` groups."""
        shifted = z + tf.repeat(offset, len(z) // count, axis=0)
        logits = vae.decoder(vae.decoder_inputs(shifted, tf.convert_to_tensor(noise)), training=False)
        features = vgg(tf.sigmoid(tf.cast(logits, tf.float32)))
        return {n: tf.reduce_mean(tf.reshape(gram_matrix(features[n]), [count, halves, -1, *goal[n].shape[1:]]), 2)
                for n in LAYERS}

    variables = [offset] if what == "means" else vae.decoder.trainable_variables
    optimizer = keras.optimizers.Adam(s.lr_means if what == "means" else s.lr_decoder)

    @tf.function
    def step(z, noise):
        with tf.GradientTape() as tape:
            grams = mean_grams(z, noise, 2)
            loss = 0.0
            for n in LAYERS:
                error = grams[n] - goal[n][:, None]
                loss += tf.reduce_sum(error[:, 0] * error[:, 1]) / span2
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

    check = draws(np.random.default_rng([s.seed, 1618]), 4 * s.batch_size)  # fixed, held out

    def held_out_error() -> np.ndarray:
        sums = {n: 0.0 for n in LAYERS}
        for k in range(4):  # chunks of batch_size draws of every style, style by style
            grams = mean_grams(*(c[k::4] for c in check), 1)
            for n in LAYERS:
                sums[n] = sums[n] + grams[n][:, 0].numpy()
        return np.sqrt(sum(np.sum((sums[n] / 4 - goal[n].numpy()) ** 2, axis=(1, 2)) for n in LAYERS) / span2)

    weights = [v.numpy() for v in vae.decoder.trainable_variables]
    try:
        before, t0 = held_out_error(), time.perf_counter()
        for i in range(s.steps):
            step(*draws(np.random.default_rng([s.seed, i]), s.batch_size))
        seconds = time.perf_counter() - t0
        after = held_out_error()
        moved = (np.linalg.norm(offset.numpy(), axis=1).tolist() if what == "means" else
                 [float(np.sqrt(sum(np.sum((v.numpy() - w) ** 2) for v, w in zip(vae.decoder.trainable_variables,
                                                                                 weights))))])
    finally:
        for v, w in zip(vae.decoder.trainable_variables, weights):  # the caller's VAE as it came
            v.assign(w)
    return {"before": before.tolist(), "after": after.tolist(), "seconds": seconds, "moved": moved}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=iu.HelpFormatter)
    d = Settings(size=0)
    ap.add_argument("--vae", type=Path, required=True, help="a trained vae_keras.py run folder (with latents.npz)")
    ap.add_argument("--sample-size", type=int, default=0, metavar="PX",
                    help="size of the draws and the real crops (a texture decoder draws any multiple of 8; 0: the "
                         "VAE's crop size)")
    ap.add_argument("--what", default=",".join(WHATS), help="comma-separated: means, decoder")
    ap.add_argument("--steps", type=int, default=d.steps, help="Adam steps for each")
    ap.add_argument("--batch-size", type=int, default=d.batch_size,
                    help="draws per style and step, even")
    ap.add_argument("--crops", type=int, default=d.crops, help="real crops per style")
    ap.add_argument("--lr-means", type=float, default=d.lr_means,
                    help="Adam learning rate on the mean codes")
    ap.add_argument("--lr-decoder", type=float, default=d.lr_decoder,
                    help="Adam learning rate on the decoder's weights")
    ap.add_argument("--seed", type=int, default=d.seed, help="seed of the draws and crops")
    args = ap.parse_args(argv)
    whats = [w.strip() for w in args.what.split(",") if w.strip()]
    if not whats or any(w not in WHATS for w in whats):
        return iu.fail(f"--what {args.what}: use some of {', '.join(WHATS)}")
    if args.steps < 0 or args.batch_size < 2 or args.batch_size % 2 or args.crops < 1 or args.sample_size < 0:
        return iu.fail("need --steps >= 0, an even --batch-size >= 2, --crops >= 1 and --sample-size >= 0")
    from perceptual import vgg_features
    from style_sampler import SamplerConfig, sample_size
    from style_images import load_styles
    from vae_keras import load_vae
    from vae_latents import latent_spread, load_latents

    try:
        vae, config = load_vae(args.vae)
        latents = load_latents(args.vae)
        size = sample_size(SamplerConfig(vae=str(args.vae), size=args.sample_size), config, args.vae)
        styles = load_styles(config.styles, config.size, config.style_size)
    except (RunError, iu.ImageError) as e:
        return iu.fail(str(e))
    settings = Settings(size=size, steps=args.steps, batch_size=args.batch_size, crops=args.crops,
                        lr_means=args.lr_means, lr_decoder=args.lr_decoder, seed=args.seed)
    vgg = vgg_features(LAYERS, name="reach_vgg")
    targets = target_grams(styles, config, settings, vgg)
    names = [str(n) for n in latents["styles"]]
    report = {}
    for what in whats:
        r = report[what] = reach(vae, latents, targets, settings, vgg, what)
        errors = ", ".join(f"{n} {b:.3f} -> {a:.3f}" for n, b, a in zip(names, r["before"], r["after"]))
        if what == "means":
            r["spread"] = [float(np.sqrt(np.sum(latent_spread(latents, k, np.eye(latents["mean"].shape[1])) ** 2)))
                           for k in range(len(names))]  # the root of the covariance's trace
            moved = "codes moved by " + " / ".join(f"{m:.2f}" for m in r["moved"]) + " (their Gaussians' spread, " \
                "the root of the covariance's trace: " + " / ".join(f"{m:.2f}" for m in r["spread"]) + ")"
        else:
            moved = f"weights moved by {r['moved'][0]:.3f} (L2)"
        print(f"{what:8s} {args.steps} steps at {size} px, {r['seconds']:.0f} s: endpoint Gram error {errors}; "
              f"{moved}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
