"""A convolutional VAE over random crops of style images: the source of the continuum of styles.

    python vae_keras.py train --style starry.jpg --style honeycomb.png --run-dir runs/vae [--size 224] [--steps N]
    python vae_keras.py encode --run-dir runs/vae [--crops 512]        # (re)write latents.npz
    python vae_keras.py reconstruct --run-dir runs/vae a.jpg b.jpg --out recon/
    python vae_keras.py sample --run-dir runs/vae --n 16 --out samples.png

Model: stride-2 conv encoder to the mean and (clamped) log-variance of z; decoder from z through a small dense seed
map and nearest-upsample conv blocks to size x size x 3 logits. There is no final fully connected layer (the original
design: it is what made 224 px fit in GPU memory). Reconstruction loss: `mse` on sigmoid(logits), `bce` = sigmoid
cross-entropy computed from the logits (the original project passed sigmoid outputs to a from-logits loss, which is
what made its images strange), or `perceptual` = DFC-VAE (Hou et al. 2017, arXiv 1610.00291) VGG feature loss plus
a small pixel term. KL term weighted by beta with a linear warm-up.

Training a 224 px VAE takes hours on a CPU; `--size 64 --steps 300` (a few minutes) shows the mechanics.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import warnings
from pathlib import Path

import numpy as np

import image_utilities as iu
from run_dir import (RUNTIME_KEYS, Run, RunControl, RunError, add_run_args, config_from_args, make_strategy,
                     per_replica, read_config, restore_latest, task_role)

BUILTIN_PREFIX = "builtin:"
LOGVAR_RANGE = (-10.0, 6.0)  # clamping keeps exp(logvar) finite early in training
PERCEPTUAL_LAYERS = {"relu1_2": 1.0, "relu2_2": 1.0, "relu3_3": 1.0}  # DFC-VAE uses early and middle layers
PERCEPTUAL_PIXEL_WEIGHT = 0.1
# `gram`: texture statistics (Gram matrices, as the stylizer's style loss) dominate, with a light feature and pixel
# term to keep the layout. A 32-256 number code cannot pin down the random phase of brush strokes, so pixel and
# feature losses average them into blur; Gram matching lets the decoder draw sharp texture with any phase.
GRAM_WEIGHTS = {"gram": 10.0, "feature": 0.1, "pixel": 0.1}
RESUME_SAFE = RUNTIME_KEYS + ("encode_crops",)


@dataclasses.dataclass(frozen=True)
class VAEConfig(RunControl):
    styles: tuple = ()
    size: int = 224
    latent_dim: int = 256
    width: int = 32
    recon: str = "mse"
    beta: float = 1.0
    beta_warmup: int = 0
    steps: int = 2000
    batch_size: int = 8
    lr: float = 3e-4
    clip_norm: float = 100.0
    seed: int = 0
    crop_scale: tuple = (0.7, 1.5)
    style_size: int = 0
    encode_crops: int = 512


# --------------------------------------------------------------------------------------------------------------------
# Model

def _downsamples(size: int) -> int:
    if size % 32 or size < 32:
        raise ValueError(f"--size must be a positive multiple of 32, got {size}")
    return 5


def build_encoder(size: int, latent_dim: int, width: int = 32):
    import keras
    from keras import layers

    x_in = keras.Input((size, size, 3), name="image")
    x = x_in * 2.0 - 1.0
    for i, ch in enumerate([width, width * 2, width * 4, width * 8, width * 8][:_downsamples(size)]):
        x = layers.Conv2D(ch, 4, strides=2, padding="same", name=f"down{i}")(x)
        x = layers.LeakyReLU(0.2)(layers.BatchNormalization(synchronized=True, name=f"down{i}_bn")(x))
        x = layers.Conv2D(ch, 3, padding="same", name=f"down{i}_refine")(x)
        x = layers.LeakyReLU(0.2)(layers.BatchNormalization(synchronized=True, name=f"down{i}_refine_bn")(x))
    x = layers.Flatten()(x)
    mean = layers.Dense(latent_dim, name="z_mean")(x)
    logvar = layers.Dense(latent_dim, name="z_logvar")(x)
    logvar = keras.ops.clip(logvar, *LOGVAR_RANGE)
    return keras.Model(x_in, {"mean": mean, "logvar": logvar}, name="encoder")


def build_decoder(size: int, latent_dim: int, width: int = 32):
    """z -> logits [size, size, 3]. A dense layer makes only the small seed map; everything after is convolutional."""
    import keras
    from keras import layers

    seed = size // 32
    z = keras.Input((latent_dim,), name="z")
    x = layers.Dense(seed * seed * width * 8, name="seed_map")(z)
    x = layers.Reshape((seed, seed, width * 8))(x)
    x = layers.LeakyReLU(0.2)(x)
    for i, ch in enumerate([width * 8, width * 4, width * 2, width, width]):
        x = layers.UpSampling2D(2, interpolation="nearest", name=f"up{i}")(x)
        x = layers.Conv2D(ch, 3, padding="same", name=f"up{i}_conv")(x)
        x = layers.LeakyReLU(0.2)(layers.BatchNormalization(synchronized=True, name=f"up{i}_bn")(x))
        x = layers.Conv2D(ch, 3, padding="same", name=f"up{i}_refine")(x)
        x = layers.LeakyReLU(0.2)(layers.BatchNormalization(synchronized=True, name=f"up{i}_refine_bn")(x))
    logits = layers.Conv2D(3, 3, padding="same", name="logits")(x)
    return keras.Model(z, logits, name="decoder")


class VAE:
    """Encoder + decoder built from a config, with the few operations every module needs."""

    def __init__(self, config: VAEConfig):
        self.config = config
        self.encoder = build_encoder(config.size, config.latent_dim, config.width)
        self.decoder = build_decoder(config.size, config.latent_dim, config.width)

    def encode(self, images):
        """Posterior mean and log-variance for a batch of size x size crops in [0,1]."""
        out = self.encoder(np.asarray(images, np.float32), training=False)
        return out["mean"].numpy(), out["logvar"].numpy()

    def decode(self, z):
        """Images in [0,1] for a batch of latents."""
        import tensorflow as tf

        return tf.sigmoid(self.decoder(np.asarray(z, np.float32), training=False)).numpy()

    def reconstruct(self, images):
        return self.decode(self.encode(images)[0])


# --------------------------------------------------------------------------------------------------------------------
# Losses: per-example values, summed over pixels (or latent dimensions) so that beta keeps its ELBO meaning.

def kl_divergence(mean, logvar):
    """KL(N(mean, exp(logvar)) || N(0, I)) in closed form, per example: [B]."""
    import tensorflow as tf

    return 0.5 * tf.reduce_sum(tf.exp(logvar) + tf.square(mean) - 1.0 - logvar, axis=-1)


def bce_from_logits(logits, target):
    """Sigmoid cross-entropy computed from logits (numerically stable), summed over pixels: [B]."""
    import tensorflow as tf

    per_pixel = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits)
    return tf.reduce_sum(per_pixel, axis=[1, 2, 3])


def reconstruction_loss(kind: str, logits, target, vgg=None):
    import tensorflow as tf

    pixels = tf.cast(tf.reduce_prod(tf.shape(target)[1:]), tf.float32)
    if kind == "bce":
        return bce_from_logits(logits, target)
    recon = tf.sigmoid(logits)
    mse = tf.reduce_mean(tf.square(recon - target), axis=[1, 2, 3])
    if kind == "mse":
        return mse * pixels
    if kind in ("perceptual", "gram"):
        from perceptual import content_loss, gram_matrix, style_loss
        fr, ft = vgg(recon), vgg(target)
        feature = sum(w * content_loss(fr[name], ft[name]) for name, w in PERCEPTUAL_LAYERS.items())
        if kind == "perceptual":
            return (feature + PERCEPTUAL_PIXEL_WEIGHT * mse) * pixels
        grams = style_loss({n: gram_matrix(fr[n]) for n in PERCEPTUAL_LAYERS},
                           {n: gram_matrix(ft[n]) for n in PERCEPTUAL_LAYERS})
        w = GRAM_WEIGHTS
        return (w["gram"] * grams + w["feature"] * feature + w["pixel"] * mse) * pixels
    raise ValueError(f"unknown reconstruction loss '{kind}': use mse, bce, perceptual or gram")


def beta_at(config: VAEConfig, step: int) -> float:
    if config.beta_warmup <= 0:
        return config.beta
    return config.beta * min(1.0, step / config.beta_warmup)


# --------------------------------------------------------------------------------------------------------------------
# Data

def style_names(style_specs) -> list[str]:
    names = []
    for spec in style_specs:
        name = spec[len(BUILTIN_PREFIX):] if spec.startswith(BUILTIN_PREFIX) else Path(spec).stem
        while name in names:
            name += "_"
        names.append(name)
    return names


def load_styles(style_specs, size: int, style_size: int = 0) -> list[np.ndarray]:
    """Style images by path (or `builtin:NAME`), resized so their shorter side is `style_size` when given (the
    scale at which the stylizer will see the style); any smaller than the crop is enlarged, with a warning."""
    images = []
    builtins = None
    for spec in style_specs:
        if spec.startswith(BUILTIN_PREFIX):
            builtins = builtins or iu.default_styles(max(512, 2 * size))
            name = spec[len(BUILTIN_PREFIX):]
            if name not in builtins:
                raise iu.ImageError(spec, f"no built-in style of that name (have {', '.join(builtins)})")
            im = builtins[name]
        else:
            im = iu.load_image(spec)
        images.append(at_training_scale(im, size, style_size, name=spec))
    return images


def at_training_scale(image: np.ndarray, size: int, style_size: int = 0, name=None) -> np.ndarray:
    """An image resized the way training sees its styles: shorter side `style_size` when set, and enlarged when
    smaller than the `size` crop (with a warning naming it, when `name` is given)."""
    if style_size:
        image = iu.resize_short_side(image, style_size)
    if min(image.shape[:2]) < size:
        if name is not None:
            warnings.warn(f"{name}: {image.shape[1]}x{image.shape[0]} is smaller than the {size} px crop; "
                          "enlarging it", stacklevel=3)
        image = iu.resize_short_side(image, size)
    return image


def crop_batch(styles, config: VAEConfig, rng: np.random.Generator, batch_size: int):
    """A batch of random crops (scale jitter, flips, 90-degree rotations), each from a style chosen uniformly."""
    labels = rng.integers(0, len(styles), batch_size)
    crops = [iu.random_crop(styles[k], config.size, rng, scale=config.crop_scale, flip=True, rotate90=True)
             for k in labels]
    return np.stack(crops), labels


def batch_rng(seed: int, step: int) -> np.random.Generator:
    """Randomness of step `step` depends on (seed, step) alone, so a resumed run continues exactly."""
    return np.random.default_rng([seed, step])


# --------------------------------------------------------------------------------------------------------------------
# Training

def make_train_step(vae: VAE, optimizer, config: VAEConfig, strategy, vgg=None):
    """One compiled step over the global batch, split across the strategy's replicas. Each replica's loss is its
    share of the global-batch mean; Keras sums the replicas' gradients."""
    import tensorflow as tf

    variables = vae.encoder.trainable_variables + vae.decoder.trainable_variables
    global_batch = float(config.batch_size)

    @tf.autograph.experimental.do_not_convert  # plain tensor code; AutoGraph's closure check trips on it
    def replica_step(images, eps, beta):
        with tf.GradientTape() as tape:
            post = vae.encoder(images, training=True)
            z = post["mean"] + tf.exp(0.5 * post["logvar"]) * eps
            logits = vae.decoder(z, training=True)
            recon = tf.reduce_sum(reconstruction_loss(config.recon, logits, images, vgg)) / global_batch
            kl = tf.reduce_sum(kl_divergence(post["mean"], post["logvar"])) / global_batch
            loss = recon + beta * kl
        grads = tape.gradient(loss, variables)
        # Clip the global-batch gradient, not each replica's share (Keras's global_clipnorm would clip the shares):
        # sum across replicas, clip, divide by the replica count so that the optimizer's own sum restores it.
        replicas = strategy.num_replicas_in_sync
        grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
        grads, _ = tf.clip_by_global_norm(grads, config.clip_norm)
        optimizer.apply_gradients(zip([g / replicas for g in grads], variables))
        return {"loss": loss, "recon": recon, "kl": kl}

    @tf.function
    def train_step(images, eps, beta):
        per = strategy.run(replica_step, args=(images, eps, beta))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per.items()}

    return train_step


def step_noise(config: VAEConfig, step: int) -> np.ndarray:
    """The reparameterisation noise of a step for the whole global batch, a function of (seed, step) alone."""
    import tensorflow as tf

    return tf.random.stateless_normal([config.batch_size, config.latent_dim], seed=[config.seed, step]).numpy()


def fixed_snapshot_inputs(styles, config: VAEConfig, n_per_style: int = 2):
    """Crops and latents that stay the same for the whole run, so snapshots form a meaningful animation."""
    rng = np.random.default_rng([config.seed, 987654321])
    crops = [iu.random_crop(s, config.size, rng, scale=(1.0, 1.0), flip=False) for s in styles
             for _ in range(n_per_style)]
    z = rng.standard_normal((max(4, len(crops)), config.latent_dim)).astype(np.float32)
    return np.stack(crops), z


def write_snapshots(run: Run, vae: VAE, step: int, crops, z, names):
    recon = vae.reconstruct(crops)
    decoded = vae.decode(z)
    cols = max(len(crops), len(decoded))
    blank = np.ones_like(crops[0])
    rows = [list(crops) + [blank] * (cols - len(crops)), list(recon) + [blank] * (cols - len(recon)),
            list(decoded) + [blank] * (cols - len(decoded))]
    grid = iu.image_grid([im for row in rows for im in row], cols=cols)
    iu.save_image(run.snapshot_path(step), grid)
    per = len(crops) // len(names)
    # The original project's quad figure: one crop of two styles over their reconstructions.
    for i in range(per):
        a, b = i, per + i if len(names) > 1 else i
        quad = iu.quad_figure(crops[a], crops[b], recon[a], recon[b], labels=(names[0], names[min(1, len(names) - 1)]))
        iu.save_image(run.path / f"quad_{i}.png", quad)


def encode_styles(vae: VAE, styles, names, config: VAEConfig, crops: int, batch_size: int = 32) -> dict:
    """Mean and std of each style's posterior means over `crops` random crops: the per-style latent Gaussians."""
    rng = np.random.default_rng([config.seed, 424242])
    means, stds = [], []
    for style in styles:
        mus = []
        for start in range(0, crops, batch_size):
            n = min(batch_size, crops - start)
            batch = np.stack([iu.random_crop(style, config.size, rng, scale=config.crop_scale, flip=True,
                                             rotate90=True) for _ in range(n)])
            mus.append(vae.encode(batch)[0])
        mus = np.concatenate(mus)
        means.append(mus.mean(0))
        stds.append(mus.std(0))
    return {"styles": np.array(names), "mean": np.stack(means).astype(np.float32),
            "std": np.stack(stds).astype(np.float32), "crops": np.int64(crops)}


def save_latents(run_dir, latents: dict) -> Path:
    import io
    buf = io.BytesIO()
    np.savez(buf, **latents)
    return iu.atomic_write_bytes(Path(run_dir) / "latents.npz", buf.getvalue())


def train(config: VAEConfig, run_dir) -> int:
    import keras
    import tensorflow as tf

    strategy = make_strategy(config.strategy, config.devices, config.logical_cpus)
    chief, task = task_role(strategy)
    names = style_names(config.styles)
    styles = load_styles(config.styles, config.size, config.style_size)
    run = Run(run_dir, config, resume_safe=RESUME_SAFE, chief=chief, task=task)
    keras.utils.set_random_seed(config.seed)  # the same initial weights for the same seed, in any process
    with strategy.scope():
        vae = VAE(config)
        optimizer = keras.optimizers.Adam(config.lr)  # gradients are clipped in the step (see make_train_step)
        optimizer.build(vae.encoder.trainable_variables + vae.decoder.trainable_variables)
        vgg = None
        if config.recon in ("perceptual", "gram"):
            from perceptual import vgg_features
            vgg = vgg_features(list(PERCEPTUAL_LAYERS))
    run.checkpoint(encoder=vae.encoder, decoder=vae.decoder, optimizer=optimizer)
    start = run.restore()
    train_step = make_train_step(vae, optimizer, config, strategy, vgg)
    snap_crops, snap_z = fixed_snapshot_inputs(styles, config)
    if start:
        print(f"resuming {run.path} from step {start}", flush=True)
    if start >= config.steps:
        print(f"{run.path} is already at step {start} (asked for {config.steps}); nothing to train")

    def step_fn(step):
        images, _ = crop_batch(styles, config, batch_rng(config.seed, step), config.batch_size)
        dist_images, dist_eps = per_replica(strategy, config.batch_size, images, step_noise(config, step))
        beta = beta_at(config, step)
        return {**train_step(dist_images, dist_eps, tf.constant(beta, tf.float32)), "beta": beta}

    status = run.train_loop(start, config.steps, config, step_fn,
                            lambda step: write_snapshots(run, vae, step, snap_crops, snap_z, names))
    if status != "done":
        return 1 if status == "nan" else 0
    if chief and (config.steps > start or not (run.path / "latents.npz").exists()):
        latents = encode_styles(vae, styles, names, config, config.encode_crops)
        save_latents(run.path, latents)
        print(f"wrote {run.path / 'latents.npz'} ({len(names)} styles x {config.latent_dim} dims)", flush=True)
    return 0


def interpolate(z_a, z_b, ts, kind: str = "linear") -> np.ndarray:
    """Points along the path from z_a to z_b at fractions `ts` (t=0 gives z_a and t=1 gives z_b exactly).
    `slerp` follows the great circle (White 2016, arXiv 1609.04468), keeping the norm typical of Gaussian samples;
    it falls back to a straight line when the two are almost parallel."""
    z_a, z_b = np.asarray(z_a, np.float64), np.asarray(z_b, np.float64)
    ts = np.asarray(ts, np.float64)[:, None]
    if kind == "linear":
        out = (1.0 - ts) * z_a + ts * z_b
    elif kind == "slerp":
        cos = np.dot(z_a, z_b) / (np.linalg.norm(z_a) * np.linalg.norm(z_b) + 1e-12)
        omega = np.arccos(np.clip(cos, -1.0, 1.0))
        if np.sin(omega) < 1e-6:
            out = (1.0 - ts) * z_a + ts * z_b
        else:
            out = (np.sin((1.0 - ts) * omega) * z_a + np.sin(ts * omega) * z_b) / np.sin(omega)
    else:
        raise ValueError(f"unknown interpolation '{kind}': use linear or slerp")
    out[ts[:, 0] == 0.0] = z_a
    out[ts[:, 0] == 1.0] = z_b
    return out.astype(np.float32)


# --------------------------------------------------------------------------------------------------------------------
# Loading a run

def load_vae(run_dir) -> tuple[VAE, VAEConfig]:
    """The trained VAE of a run folder. Raises RunError with a one-line reason when the folder is not usable."""
    config = read_config(run_dir, VAEConfig, "VAE")
    vae = VAE(config)
    restore_latest(run_dir, encoder=vae.encoder, decoder=vae.decoder)
    return vae, config


def load_latents(run_dir) -> dict:
    path = Path(run_dir) / "latents.npz"
    if not path.exists():
        raise RunError(f"{path}: missing; run `python vae_keras.py encode --run-dir {run_dir}`")
    try:
        with np.load(path) as z:
            latents = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise RunError(f"{path}: unreadable ({e})") from None
    for key in ("styles", "mean", "std"):
        if key not in latents:
            raise RunError(f"{path}: has no '{key}' array")
    if latents["mean"].shape != latents["std"].shape or latents["mean"].shape[0] != len(latents["styles"]):
        raise RunError(f"{path}: inconsistent shapes {latents['mean'].shape} / {latents['std'].shape}")
    return latents


# --------------------------------------------------------------------------------------------------------------------
# CLI

def _add_train_args(p):
    d = VAEConfig()
    p.add_argument("--style", action="append", default=[], metavar="IMG",
                   help="a style image (repeat for each style); default: the built-in night_swirls and honeycomb")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--size", type=int, default=d.size, help="crop size, a multiple of 32")
    p.add_argument("--style-size", type=int, default=d.style_size, metavar="PX",
                   help="resize each style image's shorter side to PX first (0: as is); match the scale at which "
                        "the stylizer will use the style (its --size) so sampled textures have the right scale")
    p.add_argument("--latent-dim", type=int, default=d.latent_dim)
    p.add_argument("--width", type=int, default=d.width, help="channels of the first conv layer")
    p.add_argument("--recon", choices=("mse", "bce", "perceptual", "gram"), default=d.recon,
                   help="gram: texture statistics plus a light feature term (sharp texture for the stylizer)")
    p.add_argument("--beta", type=float, default=d.beta)
    p.add_argument("--beta-warmup", type=int, default=d.beta_warmup, metavar="STEPS")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--clip-norm", type=float, default=d.clip_norm,
                   help="clip the global gradient norm (keeps early KL spikes from blowing up a run)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--encode-crops", type=int, default=d.encode_crops,
                   help="random crops per style encoded into latents.npz at the end")
    add_run_args(p, d)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train_args(sub.add_parser("train", help="train (or resume) a VAE run"))
    p = sub.add_parser("encode", help="write latents.npz: per-style mean/std of latent encodings")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--crops", type=int, default=512)
    p = sub.add_parser("reconstruct", help="encode and decode images (center crops)")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("sample", help="decode random latents from N(0, I) into a grid")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    try:
        if args.command == "train":
            if args.steps < 1 or args.batch_size < 1:
                return iu.fail("--steps and --batch-size must be at least 1")
            _downsamples(args.size)
            styles = tuple(str(Path(s)) for s in args.style) or tuple(BUILTIN_PREFIX + n for n in iu.DEFAULT_STYLES)
            config = config_from_args(VAEConfig, argparse.Namespace(**{**vars(args), "styles": styles}))
            return train(config, args.run_dir)
        vae, config = load_vae(args.run_dir)
        if args.command == "encode":
            names = style_names(config.styles)
            latents = encode_styles(vae, load_styles(config.styles, config.size, config.style_size), names, config,
                                   args.crops)
            print(f"wrote {save_latents(args.run_dir, latents)}")
        elif args.command == "reconstruct":
            bad = 0
            for path in args.images:
                try:
                    crop = iu.center_crop(at_training_scale(iu.load_image(path), config.size, config.style_size),
                                          config.size)
                except iu.ImageError as e:
                    print(f"error: {e}", file=sys.stderr)
                    bad += 1
                    continue
                out = args.out / f"{path.stem}_recon.png"
                iu.save_image(out, iu.image_grid([crop, vae.reconstruct(crop[None])[0]], cols=2))
                print(f"wrote {out}")
            if bad:
                return iu.fail(f"{bad} of {len(args.images)} images could not be read")
        elif args.command == "sample":
            z = np.random.default_rng(args.seed).standard_normal((args.n, config.latent_dim))
            iu.save_image(args.out, iu.image_grid(list(vae.decode(z)), cols=math.ceil(math.sqrt(args.n))))
            print(f"wrote {args.out}")
    except (iu.ImageError, RunError, ValueError) as e:
        return iu.fail(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
