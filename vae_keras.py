"""A convolutional VAE over random crops of style images: the source of the continuum of styles.

    python vae_keras.py train --style starry.jpg --style scream.jpg --run-dir runs/vae      # the recommended route
    python vae_keras.py train --recipe cpu-demo --style a.jpg --style b.jpg --run-dir runs/vae   # CPU budgets
    python vae_keras.py encode --run-dir runs/vae [--crops 512]        # (re)write latents.npz
    python vae_keras.py reconstruct --run-dir runs/vae a.jpg b.jpg --out recon/
    python vae_keras.py sample --run-dir runs/vae --n 16 --out samples.png

This file: the crops it trains on, the training step and loop, the batch norms' sampling statistics, the per-style
latent Gaussians (latents.npz) and the CLI. The config (VAEConfig), networks and losses live in vae_model.py.

The defaults are the route that gives a continuum between the styles: the texture decoder (a noise image is its only
source of layout and the code z sets each layer's statistics, so samples of one style differ wherever their noise
does), a Gram reconstruction loss, and three continuum terms: `path_weight` decodes points between two crops' codes
and asks for the mix of their Grams (Texture Mixer), `endpoint_weight` keeps each style's mean Gram on the
painting's, `diversity_weight` asks two decodes to differ at least as much as the real crops they came from. The
original design's choices stay settable through a recipe or --set: `recon` mse (on sigmoid(logits)), bce (sigmoid
cross-entropy computed from the logits), perceptual (DFC-VAE, Hou et al. 2017, arXiv 1610.00291), `decoder seed`,
`beta`, `beta_warmup` (Bowman et al. 2016, arXiv 1511.06349). recipes/README.md lists every setting.

The defaults train 10,000 steps of 128 px crops: a GPU budget. On a CPU, `--recipe cpu-demo` (64 px, 1,000 steps,
about 8 minutes on 2 cores) gives usable samples.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import sys
from pathlib import Path

import numpy as np

import builtin_images
import image_utilities as iu
from distribute import distributed_step, dtype_policy, make_strategy, per_replica, task_role
from run_config import (LR_FLOOR, RESUMABLE_KEYS, RunError, add_config_args, add_run_args, apply_recipe,
                        config_from_args, lr_at, read_config)
from run_dir import EXIT_CODES, Run, restore_latest
from perceptual import gram_matrix
from style_images import BUILTIN_PREFIX, at_training_scale, load_styles, style_names, training_crops
from vae_latents import encode_styles, save_latents
from vae_model import (PERCEPTUAL_LAYERS, TEXTURE_LAYERS, VAE, VAE_PRECISIONS, VAEConfig, check_size, decoder_noise,
                       diversity_loss, endpoint_loss, kl_divergence, path_loss, reconstruction_loss, texture_grams)

RESUME_SAFE = RESUMABLE_KEYS + ("encode_crops",)
STYLE_GRAM_CROPS = 128  # real crops per style behind the mean Grams of the endpoint term
NORM_BATCHES = 32  # training batches behind the batch norms' statistics for sampling (recalibrate_norms)
SNAPSHOT_NORM_BATCHES = 4  # the same before each intermediate snapshot


# --------------------------------------------------------------------------------------------------------------------
# Schedules

def beta_at(config: VAEConfig, step: int) -> float:
    if config.beta_warmup <= 0:
        return config.beta
    return config.beta * min(1.0, step / config.beta_warmup)


# --------------------------------------------------------------------------------------------------------------------
# Data


def crop_batch(styles, config: VAEConfig, rng: np.random.Generator, batch_size: int):
    """A batch of random crops (scale jitter, flips, 90-degree rotations), each from a style chosen uniformly."""
    labels = rng.integers(0, len(styles), batch_size)
    return np.concatenate([training_crops(styles[k], config, rng, 1) for k in labels]), labels


def batch_rng(seed: int, step: int) -> np.random.Generator:
    """Randomness of step `step` depends on (seed, step) alone, so a resumed run continues exactly."""
    return np.random.default_rng([seed, step])


# --------------------------------------------------------------------------------------------------------------------
# Training

def make_train_step(vae: VAE, optimizer, config: VAEConfig, strategy, vgg=None, style_grams=None):
    """One compiled step over the global batch, split across the strategy's replicas. Each replica's loss is its
    share of the global-batch mean; Keras sums the replicas' gradients. The continuum terms pair the examples
    (2k, 2k+1) of each replica's share: with --path-weight the decoder also decodes one point between each pair's
    codes (at its own t), under the noise of the pair's first crop.

    Speed: the share is first reordered so that pair k is (k, k + B/2), which turns every split of the
    feature maps into contiguous halves (a strided slice's gradient scatters into zeros the size of the batch); VGG
    runs once on all decodes and once on the crops, and each Gram is computed once and shared by the gram
    reconstruction and the continuum terms. benchmarks/reference_steps.py keeps the step before these changes;
    the tests check both give the same losses."""
    import tensorflow as tf

    variables = vae.encoder.trainable_variables + vae.decoder.trainable_variables
    global_batch, global_pairs = float(config.batch_size), float(config.batch_size // 2)
    replicas = strategy.num_replicas_in_sync
    style_grams = {n: tf.constant(g) for n, g in (style_grams or {}).items()}
    layers = tuple(TEXTURE_LAYERS)
    gram_layers = sorted(set(PERCEPTUAL_LAYERS) | set(layers if config.continuum else ()))

    def decode(z, noise):  # logits in float32 under any precision: the losses and the sigmoid need the range
        return tf.cast(vae.decoder([z, noise] if config.noise_channels else z, training=True), tf.float32)

    def replica_step(images, labels, eps, noise, t, beta):
        n = tf.shape(images)[0]
        if config.path_weight or config.diversity_weight:  # pairs (2k, 2k+1) -> (k, k + n/2)
            order = tf.concat([tf.range(0, n, 2), tf.range(1, n, 2)], 0)
            images, labels, eps, noise = (tf.gather(v, order) for v in (images, labels, eps, noise))
        with tf.GradientTape() as tape:
            post = {k: tf.cast(v, tf.float32) for k, v in vae.encoder(images, training=True).items()}
            z = post["mean"] + tf.exp(0.5 * post["logvar"]) * eps
            if config.path_weight:
                z_a, z_b = tf.split(z, 2)
                mid = (1.0 - t[:, None]) * z_a + t[:, None] * z_b
                logits_all = decode(tf.concat([z, mid], 0), tf.concat([noise, tf.split(noise, 2)[0]], 0))
                logits = logits_all[:n]
            else:
                logits_all = logits = decode(z, noise)
            terms, features, grams = {}, None, None

            def own(tensors):  # the decodes of the crops (not the path's midpoints), as a contiguous split
                return {k: tf.split(v, [n, -1])[0] for k, v in tensors.items()} if config.path_weight else tensors

            if vgg is not None:
                fake, real = vgg(tf.sigmoid(logits_all)), vgg(images)
                features = (own(fake), real)
                if config.recon == "gram" or config.continuum:
                    grams_fake = {k: gram_matrix(fake[k]) for k in gram_layers}
                    grams_real = {k: gram_matrix(real[k]) for k in gram_layers}
                    grams = (own(grams_fake), grams_real)
            recon = reconstruction_loss(config.recon, logits, images, vgg, features, grams, config.feature_weight)
            recon = tf.reduce_sum(recon) / global_batch
            kl = tf.reduce_sum(kl_divergence(post["mean"], post["logvar"])) / global_batch
            if config.continuum:
                pixels = float(config.size * config.size * 3)
                if config.path_weight:
                    grams_mid = {k: tf.split(v, [n, -1])[1] for k, v in grams_fake.items()}
                    halves = {k: tf.split(v, 2) for k, v in grams_real.items()}
                    a, b = ({k: v[i] for k, v in halves.items()} for i in (0, 1))
                    terms["path"] = tf.reduce_sum(path_loss(grams_mid, a, b, t, pixels, layers)) / global_pairs
                if config.endpoint_weight:
                    terms["endpoint"] = endpoint_loss(grams[0], labels, style_grams, pixels, layers,
) / replicas
                if config.diversity_weight:
                    terms["diversity"] = tf.reduce_sum(diversity_loss(features[0], real, pixels)) / global_pairs
            weights = {"path": config.path_weight, "endpoint": config.endpoint_weight,
                       "diversity": config.diversity_weight}
            loss = recon + beta * kl + sum(weights[k] * v for k, v in terms.items())
        grads = tape.gradient(loss, variables)
        # Clip the global-batch gradient, not each replica's share (Keras's global_clipnorm would clip the shares):
        # sum across replicas, clip, divide by the replica count so that the optimizer's own sum restores it.
        grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
        grads, _ = tf.clip_by_global_norm(grads, config.clip_norm)
        optimizer.apply_gradients(zip([g / replicas for g in grads], variables))
        return {"loss": loss, "recon": recon, "kl": kl, **terms}

    return distributed_step(strategy, replica_step)


def step_noise(config: VAEConfig, step: int) -> tuple[np.ndarray, np.ndarray]:
    """The reparameterisation noise of a step for the whole global batch and the decoder's noise images (a dummy
    [B, 1] when the decoder has none), functions of (seed, step) alone."""
    import tensorflow as tf

    eps = tf.random.stateless_normal([config.batch_size, config.latent_dim], seed=[config.seed, step]).numpy()
    if not config.noise_channels:
        return eps, np.zeros((config.batch_size, 1), np.float32)
    shape = [config.batch_size, config.size, config.size, config.noise_channels]
    return eps, tf.random.stateless_normal(shape, seed=[config.seed + 104729, step]).numpy()


def mean_style_grams(styles, config: VAEConfig, vgg, crops: int = STYLE_GRAM_CROPS, layers=TEXTURE_LAYERS) -> dict:
    """Each style's mean Gram over `crops` real crops at `layers` (the continuum terms'): {layer: [S, C, C]}."""
    rng = np.random.default_rng([config.seed, 31337])
    out = {n: [] for n in layers}
    for style in styles:
        sums = {n: 0.0 for n in layers}
        for start in range(0, crops, 32):
            grams = texture_grams(vgg(training_crops(style, config, rng, min(32, crops - start))), layers)
            for n in layers:
                sums[n] = sums[n] + grams[n].numpy().sum(0)
        for n in layers:
            out[n].append(sums[n] / crops)
    return {n: np.stack(v).astype(np.float32) for n, v in out.items()}


def recalibrate_norms(vae: VAE, styles, config: VAEConfig, batches: int = NORM_BATCHES, seed: int = 0):
    """Set every BatchNormalization's moving mean and variance to their averages over `batches` training batches
    (precise batch norm, Wu & Johnson 2021, arXiv 2105.07576), encoder first, then the decoder on what it decodes in
    training: sampled codes of real crops and, with --path-weight, points between pairs of them (a texture decoder has
    instance norms only, nothing stored, and is skipped).

    Why: training normalises with each batch's statistics, sampling with the moving averages, and at the learning
    rates the VAE trains with those averages (momentum 0.99: the last ~100 steps' weights) lag the weights. A run
    measured on 2026-11-30 encoded both paintings as the honeycomb's colours in inference mode while its training-mode
    reconstructions were right; with recalibrated statistics the two modes agree. Training itself never reads the
    moving averages, so recalibrating changes no training step."""
    norms = {m: batch_norms(m) for m in (vae.encoder, vae.decoder)}
    passes = norm_passes(vae)
    rng = np.random.default_rng([config.seed, seed, 271828])
    # The variance stored is the mean of the batches' variances, which is what a training-mode batch normalises with
    # on average (not the population variance of all the batches' examples).
    with zero_momentum(norms[vae.encoder] + norms[vae.decoder]):  # the graphs have 0 baked in; eager runs read it
        for model in (m for m in (vae.encoder, vae.decoder) if norms[m]):  # a texture decoder has none
            sums = [[0.0, 0.0] for _ in norms[model]]
            for _ in range(batches):
                images, _ = crop_batch(styles, config, rng, config.batch_size)
                if model is vae.encoder:
                    passes["encoder"](images)
                else:
                    mean, logvar = (v.numpy() for v in passes["encode"](images))
                    z = mean + np.exp(0.5 * logvar) * rng.standard_normal(mean.shape)
                    if config.path_weight:
                        half = len(z) // 2
                        t = rng.uniform(0.0, 1.0, (half, 1))
                        z = np.concatenate([z, (1.0 - t) * z[:half] + t * z[half:2 * half]])
                    noise = decoder_noise(rng, len(z), config.size, max(1, config.noise_channels))
                    passes["decoder"](z.astype(np.float32), noise)
                for total, layer in zip(sums, norms[model]):  # each pass left its batch's statistics
                    total[0] += layer.moving_mean.numpy()
                    total[1] += layer.moving_variance.numpy()
            for (mean_sum, var_sum), layer in zip(sums, norms[model]):
                layer.moving_mean.assign(mean_sum / batches)
                layer.moving_variance.assign(var_sum / batches)


def batch_norms(model) -> list:
    import keras

    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


@contextlib.contextmanager
def zero_momentum(norms):
    """Batch norms whose moving averages take each batch's statistics (momentum 0) inside the block."""
    momenta = [layer.momentum for layer in norms]
    try:
        for layer in norms:
            layer.momentum = 0.0
        yield
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum


def norm_passes(vae: VAE) -> dict:
    """Compiled forward passes for recalibrate_norms, made once per VAE: `encoder` and `decoder` in training mode,
    traced with every batch norm's momentum 0 (so each call leaves its batch's statistics in the moving averages;
    the graphs keep the 0), and `encode` in inference mode (mean and log-variance in float32). Plain tensor code: no
    AutoGraph, which re-reads the source file and fails when it was edited since the process started."""
    import tensorflow as tf

    if getattr(vae, "_norm_passes", None) is not None:
        return vae._norm_passes
    spec = tf.TensorSpec([None, vae.config.size, vae.config.size, 3], tf.float32)
    noise_spec = tf.TensorSpec([None, vae.config.size, vae.config.size, max(1, vae.noise_channels)], tf.float32)
    z_spec = tf.TensorSpec([None, vae.config.latent_dim], tf.float32)

    @tf.function(input_signature=[spec], autograph=False)
    def encoder(images):
        return vae.encoder(images, training=True)

    @tf.function(input_signature=[spec], autograph=False)
    def encode(images):
        out = vae.encoder(images, training=False)
        return tf.cast(out["mean"], tf.float32), tf.cast(out["logvar"], tf.float32)

    @tf.function(input_signature=[z_spec, noise_spec], autograph=False)
    def decoder(z, noise):
        return vae.decoder([z, noise] if vae.noise_channels else z, training=True)

    with zero_momentum(batch_norms(vae.encoder) + batch_norms(vae.decoder)):
        encoder.get_concrete_function(), decoder.get_concrete_function()
    vae._norm_passes = {"encoder": encoder, "encode": encode, "decoder": decoder}
    return vae._norm_passes


def fixed_snapshot_inputs(styles, config: VAEConfig, n_per_style: int = 2):
    """Crops, latents and decoder noise that stay the same for the whole run, so snapshots form an animation."""
    rng = np.random.default_rng([config.seed, 987654321])
    crops = [iu.random_crop(s, config.size, rng, scale=(1.0, 1.0), flip=False) for s in styles
             for _ in range(n_per_style)]
    z = rng.standard_normal((max(4, len(crops)), config.latent_dim)).astype(np.float32)
    noise = decoder_noise(rng, len(z), config.size, config.noise_channels) if config.noise_channels else None
    return np.stack(crops), z, noise


def quad_figure(input_a, input_b, recon_a, recon_b, labels=("input A", "input B")) -> np.ndarray:
    """The original project's 2x2 figure: two inputs on top, their reconstructions below, labelled."""
    la, lb = labels
    return iu.image_grid([input_a, input_b, recon_a, recon_b], cols=2, pad=4,
                         captions=[la, lb, f"reconstruction of {la}", f"reconstruction of {lb}"])


def write_snapshots(run: Run, vae: VAE, step: int, crops, z, noise, names):
    recon = vae.reconstruct(crops)
    decoded = vae.decode(z, noise)
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
        quad = quad_figure(crops[a], crops[b], recon[a], recon[b], labels=(names[0], names[min(1, len(names) - 1)]))
        iu.save_image(run.path / f"quad_{i}.png", quad)


def training_state(config: VAEConfig, strategy):
    """The VAE and its optimizer as a training checkpoint holds them, built under the run's precision."""
    import keras

    with strategy.scope(), dtype_policy(config.precision):
        vae = VAE(config)
        optimizer = keras.optimizers.Adam(config.lr)  # gradients are clipped in the step (see make_train_step)
        optimizer.build(vae.encoder.trainable_variables + vae.decoder.trainable_variables)
    return vae, optimizer


def train(config: VAEConfig, run_dir) -> int:
    import keras
    import tensorflow as tf

    strategy = make_strategy(config.strategy, config.devices, config.logical_cpus)
    replicas = strategy.num_replicas_in_sync
    halving = [key for key, on in (("path_weight", config.path_weight), ("diversity_weight",
               config.diversity_weight)) if on]
    if halving and config.batch_size % (2 * replicas):
        raise RunError(f"{' and '.join(halving)} split each replica's share of the batch in halves: --batch-size "
                       f"{config.batch_size} must be a multiple of {2 * replicas} on {replicas} replica(s)")
    chief, task = task_role(strategy)
    names = style_names(config.styles)
    styles = load_styles(config.styles, config.size, config.style_size)
    run = Run(run_dir, config, resume_safe=RESUME_SAFE, chief=chief, task=task)
    keras.utils.set_random_seed(config.seed)  # the same initial weights for the same seed, in any process
    vae, optimizer = training_state(config, strategy)
    vgg = None
    if config.vgg_layers():
        from perceptual import vgg_features
        with strategy.scope(), dtype_policy(config.precision):
            vgg = vgg_features(config.vgg_layers())
    style_grams = mean_style_grams(styles, config, vgg) if config.endpoint_weight else None
    run.checkpoint(encoder=vae.encoder, decoder=vae.decoder, optimizer=optimizer)
    start = run.restore()
    train_step = make_train_step(vae, optimizer, config, strategy, vgg, style_grams)
    snap_crops, snap_z, snap_noise = fixed_snapshot_inputs(styles, config)
    if start:
        print(f"resuming {run.path} from step {start}", flush=True)
    if start >= config.steps:
        print(f"{run.path} is already at step {start} (asked for {config.steps}); nothing to train")

    def step_fn(step):
        rng = batch_rng(config.seed, step)
        images, labels = crop_batch(styles, config, rng, config.batch_size)
        # Drawn after the crops, and only when used, so runs without path supervision keep their old stream.
        t = rng.uniform(0.0, 1.0, config.batch_size // 2) if config.path_weight else np.zeros(config.batch_size // 2)
        eps, noise = step_noise(config, step)
        dist = per_replica(strategy, config.batch_size, images, labels.astype(np.int32), eps, noise)
        dist_t = per_replica(strategy, config.batch_size // 2, t.astype(np.float32))[0]
        beta = beta_at(config, step)
        extra = {"beta": beta}
        if config.lr_schedule != "constant":  # the compiled step reads the variable at each call
            extra["lr"] = lr_at(config, step)
            optimizer.learning_rate.assign(extra["lr"])
        return {**train_step(*dist, dist_t, tf.constant(beta, tf.float32)), **extra}

    def snapshot_fn(step):  # sampling statistics first (a few batches; all NORM_BATCHES for the final checkpoint)
        recalibrate_norms(vae, styles, config, NORM_BATCHES if step == config.steps else SNAPSHOT_NORM_BATCHES, step)
        write_snapshots(run, vae, step, snap_crops, snap_z, snap_noise, names)

    # The chief's last step always snapshots before it saves, so the final checkpoint holds recalibrated statistics.
    status = run.train_loop(start, config.steps, config, step_fn, snapshot_fn)
    if status != "done":
        return EXIT_CODES[status]
    if chief and (config.steps > start or not (run.path / "latents.npz").exists()):
        latents = encode_styles(vae, styles, names, config, config.encode_crops)
        save_latents(run.path, latents)
        print(f"wrote {run.path / 'latents.npz'} ({len(names)} styles x {config.latent_dim} dims)", flush=True)
    return 0


# --------------------------------------------------------------------------------------------------------------------
# Loading a run

def load_vae(run_dir) -> tuple[VAE, VAEConfig]:
    """The trained VAE of a run folder (`vae.checkpoint`: the checkpoint restored, the newest usable one). Raises
    RunError with a one-line reason when the folder is not usable."""
    config = read_config(run_dir, VAEConfig, "VAE")
    vae = VAE(config)
    vae.checkpoint = restore_latest(run_dir, encoder=vae.encoder, decoder=vae.decoder)
    return vae, config


# --------------------------------------------------------------------------------------------------------------------
# CLI: one small function per subcommand

def add_train_args(p):
    d = VAEConfig()
    p.add_argument("--style", action="append", default=[], metavar="IMG",
                   help="a style image (repeat for each style); default: the built-in night_swirls and honeycomb")
    add_config_args(p, VAEConfig, "vae")
    p.add_argument("--size", type=int, default=d.size, help="crop size (the texture window), a multiple of 32")
    p.add_argument("--style-size", type=int, default=d.style_size, metavar="PX",
                   help="resize each style image's shorter side to PX first (0: as is); give the stylizer's --size, "
                        "the scale at which it will use the styles")
    p.add_argument("--steps", type=int, default=d.steps, help="training steps in all (a resumed run continues)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch, split over the replicas")
    p.add_argument("--lr", type=float, default=d.lr,
                   help=f"Adam learning rate (with lr_schedule cosine, the default, it decays along a half cosine to "
                        f"{LR_FLOOR:g}x by the last step)")
    p.add_argument("--precision", choices=VAE_PRECISIONS, default=d.precision,
                   help="Keras dtype policy: mixed_bfloat16 runs the convolutions in bfloat16 with float32 "
                        "variables, Grams and losses (CPUs with AVX512-BF16 or AMX, GPUs since Ampere); float32 "
                        "elsewhere")
    p.add_argument("--seed", type=int, default=d.seed, help="seeds weights, crops and noise")
    add_run_args(p, d)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=iu.HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name, fn, description):
        p = sub.add_parser(name, help=description, description=description, formatter_class=iu.HelpFormatter)
        p.add_argument("--run-dir", type=Path, required=True, help="a VAE run folder")
        p.set_defaults(run=fn)
        return p

    add_train_args(command("train", train_command, "train (or resume) a VAE run"))
    p = command("encode", encode_command, "write latents.npz: each style's latent Gaussian")
    p.add_argument("--crops", type=int, default=512, help="random crops per style to encode")
    p = command("reconstruct", reconstruct_command, "encode and decode images (center crops)")
    p.add_argument("images", nargs="+", type=Path, help="images to reconstruct")
    p.add_argument("--out", type=Path, required=True, help="folder for IMAGE_recon.png")
    p = command("sample", sample_command, "decode random latents from N(0, I) into a grid")
    p.add_argument("--n", type=int, default=16, help="how many samples")
    p.add_argument("--seed", type=int, default=0, help="seed of the latents (and decoder noise)")
    p.add_argument("--out", type=Path, required=True, help="the grid PNG to write")
    return parser


def train_command(args) -> int:
    if args.steps < 1 or args.batch_size < 1:
        return iu.fail("--steps and --batch-size must be at least 1")
    check_size(args.size)
    styles = tuple(str(Path(s)) for s in args.style or getattr(args, "styles", ())) or \
        tuple(BUILTIN_PREFIX + n for n in builtin_images.DEFAULT_STYLES)  # --style, else a recipe's, else built-ins
    config = config_from_args(VAEConfig, argparse.Namespace(**{**vars(args), "styles": styles}))
    if config.decoder == "texture" and config.noise_channels < 1:
        return iu.fail("decoder texture draws its layout from the noise image: noise_channels must be >= 1")
    if config.continuum and config.recon not in ("gram", "perceptual"):
        return iu.fail("the continuum terms (path, endpoint, diversity weights) compare VGG features: use recon gram "
                       "or perceptual, or set their weights to 0")
    return train(config, args.run_dir)


def encode_command(args) -> int:
    vae, config = load_vae(args.run_dir)
    styles = load_styles(config.styles, config.size, config.style_size)
    latents = encode_styles(vae, styles, style_names(config.styles), config, args.crops)
    print(f"wrote {save_latents(args.run_dir, latents)}")
    return 0


def reconstruct_command(args) -> int:
    vae, config = load_vae(args.run_dir)
    bad = 0
    for path in args.images:
        try:
            crop = iu.center_crop(at_training_scale(iu.load_image(path), config.size, config.style_size), config.size)
        except iu.ImageError as e:
            print(f"error: {e}", file=sys.stderr)
            bad += 1
            continue
        out = args.out / f"{path.stem}_recon.png"
        iu.save_image(out, iu.image_grid([crop, vae.reconstruct(crop[None])[0]], cols=2))
        print(f"wrote {out}")
    return iu.fail(f"{bad} of {len(args.images)} images could not be read") if bad else 0


def sample_command(args) -> int:
    vae, config = load_vae(args.run_dir)
    rng = np.random.default_rng(args.seed)
    z = rng.standard_normal((args.n, config.latent_dim))
    noise = decoder_noise(rng, args.n, config.size, config.noise_channels) if config.noise_channels else None
    iu.save_image(args.out, iu.image_grid(list(vae.decode(z, noise)), cols=math.ceil(math.sqrt(args.n))))
    print(f"wrote {args.out}")
    return 0


def main(argv=None) -> int:
    return iu.run_main(build_parser(), argv, prepare=apply_recipe)


if __name__ == "__main__":
    sys.exit(main())
