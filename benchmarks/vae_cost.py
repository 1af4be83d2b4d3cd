"""What do the continuum terms cost per VAE training step? Times the compiled step of a `recon gram` VAE with the
seed decoder and no continuum terms, of the same with the continuum terms (noise, path, endpoint and diversity), and
of the recommended route (those terms with the texture decoder: the defaults, make demo's VAE) in one process, in
alternating blocks so that all see the same machine load, and prints the ratios (target: the route <= 1.3x the
gram VAE).

    python benchmarks/vae_cost.py [--size 64] [--batch-size 16] [--latent-dim 32] [--blocks 6] [--steps 5]
                                  [--precision float32|mixed_bfloat16]

The last line is JSON: seconds per step of each and `NAME_vs_gram` for `continuum` and `continuum_texture`.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import builtin_images  # noqa: E402
import style_images  # noqa: E402
import vae_keras as V  # noqa: E402
import vae_model as M  # noqa: E402

CONTINUUM = {"noise_channels": 4, "path_weight": 1.0, "endpoint_weight": 1.0, "diversity_weight": 10.0}


def build(config: V.VAEConfig, styles, make_step=V.make_train_step):
    """A step function of `config` (fresh weights, built under its precision) and a function that runs it on step
    n's batch. `make_step`: vae_keras.make_train_step or a reference step with its arguments (speed.py)."""
    import keras
    import tensorflow as tf

    from perceptual import vgg_features
    from distribute import dtype_policy, make_strategy, per_replica

    strategy = make_strategy("default")
    with dtype_policy(config.precision):
        vae = V.VAE(config)
        vgg = vgg_features(config.vgg_layers())
    optimizer = keras.optimizers.Adam(config.lr)
    grams = V.mean_style_grams(styles, config, vgg, crops=32) if config.endpoint_weight else None
    step = make_step(vae, optimizer, config, strategy, vgg, grams)

    def run(n):
        rng = V.batch_rng(config.seed, n)
        images, labels = V.crop_batch(styles, config, rng, config.batch_size)
        t = rng.uniform(0.0, 1.0, config.batch_size // 2).astype(np.float32)
        eps, noise = V.step_noise(config, n)
        dist = per_replica(strategy, config.batch_size, images, labels.astype(np.int32), eps, noise)
        dist_t = per_replica(strategy, config.batch_size // 2, t)[0]
        out = step(*dist, dist_t, tf.constant(0.02, tf.float32))
        return float(out["loss"])
    return run


def builtin_config(**fields) -> tuple:
    """A VAEConfig on the two built-in styles (written to a temporary folder, read back as training reads them) with
    `fields`, and those styles as arrays."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = builtin_images.write_defaults(Path(tmp), 256)["styles"]
        config = V.VAEConfig(styles=tuple(map(str, paths)), **fields)
        return config, style_images.load_styles(config.styles, config.size, config.style_size)


def seconds_per_step(variants: dict, blocks: int, steps: int) -> dict:
    """Median seconds a step of each `build` runner, timed in alternating blocks of `steps` steps (after two
    tracing and warm-up steps), so that every variant sees the same machine load."""
    for run in variants.values():
        run(0), run(1)
    seconds = {name: [] for name in variants}
    for block in range(blocks):
        for name, run in variants.items():
            t0 = time.perf_counter()
            for n in range(steps):
                run(2 + block * steps + n)
            seconds[name].append((time.perf_counter() - t0) / steps)
    return {name: float(np.median(v)) for name, v in seconds.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--size", type=int, default=64, help="VAE crop size")
    ap.add_argument("--batch-size", type=int, default=16, help="batch size")
    ap.add_argument("--latent-dim", type=int, default=32, help="latent dimensions")
    ap.add_argument("--blocks", type=int, default=6, help="timed blocks per variant, alternating")
    ap.add_argument("--steps", type=int, default=5, help="steps per block")
    ap.add_argument("--precision", choices=V.VAE_PRECISIONS, default="float32", help="the VAEs' --precision")
    args = ap.parse_args(argv)
    base, styles = builtin_config(size=args.size, latent_dim=args.latent_dim, batch_size=args.batch_size,
                                  recon="gram", style_size=128, precision=args.precision, decoder="seed",
                                  feature_weight=M.GRAM_WEIGHTS["feature"], noise_channels=0, path_weight=0.0,
                                  endpoint_weight=0.0, diversity_weight=0.0)
    continuum = V.VAEConfig(**{**base.__dict__, **CONTINUUM})
    texture = V.VAEConfig(**{**continuum.__dict__, "decoder": "texture", "feature_weight": 0.0})  # the route
    variants = {"gram": build(base, styles), "continuum": build(continuum, styles),
                "continuum_texture": build(texture, styles)}
    per_step = seconds_per_step(variants, args.blocks, args.steps)
    ratios = {name: per_step[name] / per_step["gram"] for name in variants if name != "gram"}
    print(f"{args.precision}, median of {args.blocks} alternating blocks of {args.steps} steps: gram VAE step "
          f"{per_step['gram'] * 1000:.0f} ms; " + "; ".join(
              f"{name} {per_step[name] * 1000:.0f} ms = {ratio:.2f}x" for name, ratio in ratios.items())
          + " (target <= 1.3x)")
    print(json.dumps({**{f"{name}_s_per_step": v for name, v in per_step.items()},
                      **{f"{name}_vs_gram": v for name, v in ratios.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
