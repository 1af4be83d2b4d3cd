"""One feed-forward network for a continuum of styles: Johnson et al. 2016 ("Perceptual Losses for Real-Time Style
Transfer and Super-Resolution", arXiv 1603.08155) conditioned on style strengths, trained with VGG16 content, style
(Gram) and total-variation losses against styles sampled from the VAE.

    python stylizer.py train --styles runs/samples --content res/coco/train2014/train2014 --run-dir runs/sty
    python stylizer.py train --style-image a.jpg --run-dir runs/single                 # single style baseline
    python stylizer.py train --style-image a.jpg --style-image b.jpg --run-dir runs/mix # Gram mixing, no VAE
    python stylizer.py stylize --run-dir runs/sty photo.jpg --out out/ [--strength 0.3 | --weights .2,.8]
                               [--sweep 5] [--preserve-color] [--max-size 1024]

Conditioning (`--conditioning`): `channels` (default, the original design: RGB plus one constant channel per style
holding its strength in [0, 1]), `balance` (two styles: RGB plus one channel holding the weight of style B), `cin`
(conditional instance norm, Dumoulin et al. 2017, arXiv 1610.07629: per-style scale and shift in every norm layer,
mixed by the style weights) and `none` (single style).

Style targets: a training example draws one sample image from the sampler folder; its manifest weights are both the
conditioning input and the identity of its Gram target. The Grams of all samples are computed once and cached in the
sample folder (grams.npz), recomputed when the manifest changes.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import io
import json
import os
import sys
import types
from pathlib import Path

import numpy as np

import image_utilities as iu
import style_sampler
from run_dir import (Run, RunControl, RunError, add_run_args, config_from_args, distributed_step, make_strategy,
                     per_replica, read_config, restore_latest, task_role)

ROOT = Path(__file__).resolve().parent
DEFAULT_CONTENT = ROOT / "res" / "coco" / "train2014" / "train2014"
STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
CONDITIONINGS = ("channels", "balance", "cin", "none")
SNAPSHOT_STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclasses.dataclass(frozen=True)
class StylizerConfig(RunControl):
    styles: str = ""                 # sampler folder (VAE-sampled styles)
    style_images: tuple = ()         # or 1-2 style images (single style / direct Gram mixing baselines)
    content: str = str(DEFAULT_CONTENT)
    conditioning: str = "channels"
    size: int = 224
    steps: int = 40000
    batch_size: int = 4
    lr: float = 1e-3
    precision: str = "float32"
    content_layer: str = "relu2_2"
    content_weight: float = 1.0
    style_weight: float = 10.0
    tv_weight: float = 10.0
    seed: int = 0
    snapshot_every: int = 500
    checkpoint_every: int = 500


# --------------------------------------------------------------------------------------------------------------------
# Network

@functools.lru_cache(maxsize=None)
def _layers():
    """Our custom Keras layers, defined on first use so that `--help` does not wait for TensorFlow."""
    import keras
    import tensorflow as tf
    from keras import layers

    def with_channels(x, channels):
        """Reshape to [B, H, W, channels] with a literal channel count: dynamic pads, concats and resizes leave it
        unknown in the traced graph, and TFLite's converter needs it to lower convolutions."""
        shape = tf.shape(x)
        return tf.reshape(x, [shape[0], shape[1], shape[2], channels])

    class NearestUpsample(layers.Layer):
        """2x nearest-neighbour upsampling that keeps the channel count static."""

        def call(self, x):
            shape = tf.shape(x)
            up = tf.image.resize(x, [2 * shape[1], 2 * shape[2]], method="nearest")
            return with_channels(tf.cast(up, x.dtype), x.shape[-1])

    class ReflectionPad(layers.Layer):
        """Reflection padding: avoids the dark borders zero padding paints into stylized images."""

        def __init__(self, pad, **kw):
            super().__init__(**kw)
            self.pad = pad

        def call(self, x):
            p = self.pad
            return tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")

        def get_config(self):
            return {**super().get_config(), "pad": self.pad}

    class InstanceNorm(layers.Layer):
        """Instance normalisation (Ulyanov et al. 2016) with a learned scale and shift, in one of three forms:
        plain; conditional (`num_styles` > 0: one scale/shift per style mixed by the style weights, Dumoulin et al.
        2017); or with a shift from the constant style planes (`planes` > 0: a 1x1 conv of constant planes, which is
        a learned linear map of their values, added after normalisation, where instance norm cannot erase it).
        Statistics are float32, computed by fused batch norm over a [1, H, W, B*C] view of the batch: each image's
        channels are separate "channels", so batch statistics are exactly per-image statistics, at about 0.6x the
        cost of tf.nn.moments on this CPU."""

        def __init__(self, num_styles=0, planes=0, epsilon=1e-5, **kw):
            super().__init__(**kw)
            self.num_styles, self.planes, self.epsilon = num_styles, planes, epsilon
            # Inference-only switches (see tiled_stylize and export): record this call's statistics, normalise
            # with given statistics instead of the input's own, or avoid the fused op (TFLite lacks it).
            self.record, self.recorded, self.fixed_stats, self.fused = False, None, None, True

        def build(self, input_shape):
            c = input_shape[0][-1] if (self.num_styles or self.planes) else input_shape[-1]
            rows = max(self.num_styles, 1)
            self.gamma = self.add_weight(shape=(rows, c), initializer="ones", name="gamma")
            self.beta = self.add_weight(shape=(rows, c), initializer="zeros", name="beta")
            if self.planes:
                self.plane_kernel = self.add_weight(shape=(self.planes, c), name="plane_kernel",
                                                    initializer=keras.initializers.RandomNormal(stddev=0.1))

        def call(self, inputs):
            x, cond = inputs if (self.num_styles or self.planes) else (inputs, None)
            dtype, channels = x.dtype, x.shape[-1]
            x = tf.cast(x, tf.float32)
            if self.fixed_stats is not None or self.record or not self.fused:
                mean, var = self.fixed_stats if self.fixed_stats is not None else tf.nn.moments(x, [1, 2],
                                                                                             keepdims=True)
                if self.record:
                    self.recorded = (mean, var)
                x = (x - mean) * tf.math.rsqrt(var + self.epsilon)
            else:
                shape = tf.shape(x)
                b, h, w, c = shape[0], shape[1], shape[2], shape[3]
                view = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, h, w, b * c])
                normed, _, _ = tf.compat.v1.nn.fused_batch_norm(view, tf.ones([b * c]), tf.zeros([b * c]),
                                                                epsilon=self.epsilon, is_training=True)
                x = with_channels(tf.transpose(tf.reshape(normed, [h, w, b, c]), [2, 0, 1, 3]), channels)
            gamma, beta = tf.cast(self.gamma, tf.float32), tf.cast(self.beta, tf.float32)
            if self.num_styles:
                mix = tf.cast(cond, tf.float32)
                x = x * (mix @ gamma)[:, None, None, :] + (mix @ beta)[:, None, None, :]
            else:
                x = x * gamma[0] + beta[0]
            if self.planes:
                x = x + (tf.cast(cond, tf.float32) @ tf.cast(self.plane_kernel, tf.float32))[:, None, None, :]
            return tf.cast(x, dtype)

        def get_config(self):
            return {**super().get_config(), "num_styles": self.num_styles, "planes": self.planes,
                    "epsilon": self.epsilon}

    class PadToMultiple(layers.Layer):
        """Reflect-pad height and width up to a multiple of `m` (two stride-2 stages need 4)."""

        def __init__(self, m=4, **kw):
            super().__init__(**kw)
            self.m = m

        def call(self, x):
            shape = tf.shape(x)
            ph, pw = (-shape[1]) % self.m, (-shape[2]) % self.m
            return with_channels(tf.pad(x, [[0, 0], [0, ph], [0, pw], [0, 0]], mode="REFLECT"), x.shape[-1])

    class CropLike(layers.Layer):
        def call(self, inputs):
            x, ref = inputs
            shape = tf.shape(ref)
            return x[:, :shape[1], :shape[2], :]

    class StyleChannels(layers.Layer):
        """Constant planes after RGB: one per style weight (`channels`) or the weight of style B (`balance`)."""

        def __init__(self, mode, **kw):
            super().__init__(**kw)
            self.mode = mode

        def call(self, inputs):
            image, weights = inputs
            w = weights[:, 1:2] if self.mode == "balance" else weights
            shape = tf.shape(image)
            ones = tf.ones([shape[0], shape[1], shape[2], 1], image.dtype)
            planes = ones * tf.cast(w, image.dtype)[:, None, None, :]
            return with_channels(tf.concat([image, planes], axis=-1), image.shape[-1] + w.shape[-1])

        def get_config(self):
            return {**super().get_config(), "mode": self.mode}

    return types.SimpleNamespace(ReflectionPad=ReflectionPad, NearestUpsample=NearestUpsample,
                                 InstanceNorm=InstanceNorm, PadToMultiple=PadToMultiple, CropLike=CropLike,
                                 StyleChannels=StyleChannels)


def build_stylizer(num_styles: int, conditioning: str = "channels", name: str = "stylizer"):
    """The Johnson et al. transformation network as a named keras.Model taking {"image": [B,H,W,3] in [0,1],
    "weights": [B, num_styles]} and returning [B,H,W,3] in [0,1], for any H and W."""
    if conditioning not in CONDITIONINGS:
        raise ValueError(f"unknown conditioning '{conditioning}': use {', '.join(CONDITIONINGS)}")
    if conditioning == "balance" and num_styles != 2:
        raise ValueError(f"balance conditioning needs exactly 2 styles, got {num_styles}")
    import keras
    from keras import layers

    L = _layers()

    image = keras.Input((None, None, 3), name="image")
    weights = keras.Input((num_styles,), name="weights")
    counter = iter(range(1000))
    # The values of the constant style planes: one per style (`channels`) or the weight of style B (`balance`).
    plane_values = None
    if conditioning == "channels":
        plane_values = weights
    elif conditioning == "balance":
        plane_values = layers.Lambda(lambda w: w[:, 1:2], name="balance")(weights)

    def norm(x):
        name = f"in{next(counter)}"
        if conditioning == "cin":
            return L.InstanceNorm(num_styles=num_styles, name=name)([x, weights])
        if plane_values is not None:
            # A constant plane entering a conv only adds a per-channel constant to its output, and the instance
            # norm right after subtracts it: fed at the input alone, the style planes are erased by the first norm
            # (we measured identical outputs at every strength). So the planes also enter after every norm.
            return L.InstanceNorm(planes=plane_values.shape[-1], name=name)([x, plane_values])
        return L.InstanceNorm(name=name)(x)

    def conv(x, filters, kernel, stride=1, relu=True):
        x = L.ReflectionPad(kernel // 2)(x)
        x = layers.Conv2D(filters, kernel, strides=stride, padding="valid")(x)
        x = norm(x)
        return layers.ReLU()(x) if relu else x

    x = L.PadToMultiple(4)(image)
    if plane_values is not None:
        x = L.StyleChannels(conditioning)([x, weights])  # RGB plus the style planes, the original design
    x = conv(x, 32, 9)
    x = conv(x, 64, 3, stride=2)
    x = conv(x, 128, 3, stride=2)
    for _ in range(5):
        x = layers.Add()([x, conv(conv(x, 128, 3), 128, 3, relu=False)])
    for filters in (64, 32):
        # Nearest upsampling + conv instead of transposed conv: no checkerboard artefacts (Odena et al. 2016).
        x = L.NearestUpsample()(x)
        x = conv(x, filters, 3)
    x = L.ReflectionPad(4)(x)
    x = layers.Conv2D(3, 9, padding="valid")(x)
    x = layers.Activation("sigmoid", dtype="float32")(x)
    x = L.CropLike()([x, image])
    return keras.Model({"image": image, "weights": weights}, x, name=name)


# --------------------------------------------------------------------------------------------------------------------
# Style targets

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
    if not (folder / style_sampler.MANIFEST).exists():
        raise RunError(f"{folder}: not a style sample folder (no {style_sampler.MANIFEST}); run style_sampler.py "
                       "first")
    entries = style_sampler.read_manifest(folder)
    if not entries:
        raise RunError(f"{folder / style_sampler.MANIFEST}: empty")
    cached = style_sampler.read_gram_cache(folder, layers)
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
              f"{folder / style_sampler.GRAM_CACHE}", flush=True)
    grams = compute_grams(images, vgg, layers)
    names = style_sampler.style_names(folder, len(weights[0]))
    weights = np.asarray(weights, np.float32)
    style_sampler.write_gram_cache(folder, layers, weights, grams, names)
    return weights, grams, names


def style_image_grams(paths, size: int, vgg, layers):
    """Gram targets of style images resized so their shorter side is `size`."""
    images = [iu.resize_short_side(iu.load_image(p), size) for p in paths]
    return [compute_grams([im], vgg, layers) for im in images]


class StyleTargets:
    """Draws (conditioning weights, Gram targets) for a batch. Three sources share this code:
    VAE samples (a sample per example), one style image, or two style images mixed by a uniform strength."""

    def __init__(self, config: StylizerConfig, vgg, layers):
        self.layers = layers
        if config.styles:
            self.weights, self.grams, self.names = load_sample_styles(Path(config.styles), vgg, layers)
            self.mode = "samples"
        else:
            self.image_grams = style_image_grams(config.style_images, config.size, vgg, layers)
            self.names = [Path(p).stem for p in config.style_images]
            self.mode = "images"
        self.num_styles = len(self.names)

    def batch(self, rng: np.random.Generator, batch_size: int):
        if self.mode == "samples":
            idx = rng.integers(0, len(self.weights), batch_size)
            return self.weights[idx], {name: self.grams[name][idx] for name in self.layers}
        if self.num_styles == 1:
            return (np.ones((batch_size, 1), np.float32),
                    {name: np.repeat(self.image_grams[0][name], batch_size, 0) for name in self.layers})
        t = rng.uniform(0.0, 1.0, (batch_size, 1)).astype(np.float32)
        w = np.concatenate([1.0 - t, t], axis=1)
        grams = {name: w[:, 0, None, None] * self.image_grams[0][name] + w[:, 1, None, None] * self.image_grams[1][name]
                 for name in self.layers}
        return w, grams


# --------------------------------------------------------------------------------------------------------------------
# Content data

class ContentStream:
    """Content crops in a seeded order that depends only on (seed, position): position p is item p % N of the
    permutation for epoch p // N. Unreadable files are skipped (and listed) without shifting what follows, so a
    resumed run continues with exactly the next unread item."""

    def __init__(self, folder, size: int, seed: int, bad_list: Path | None = None):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise RunError(f"{folder}: no such content folder")
        self.files = iu.list_images(self.folder)
        if not self.files:
            raise RunError(f"{folder}: no .jpg/.png content images found (searched recursively)")
        self.size, self.seed, self.bad_list = size, seed, bad_list
        self.bad = set()
        if bad_list and bad_list.exists():
            self.bad = set(bad_list.read_text().splitlines())
        self._perm_epoch, self._perm = None, None

    def file_at(self, position: int) -> Path:
        epoch, i = divmod(position, len(self.files))
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch, 77]).permutation(len(self.files))
            self._perm_epoch = epoch
        return self.files[self._perm[i]]

    def crop(self, path: Path, position: int) -> np.ndarray:
        image = iu.resize_short_side(iu.load_image(path), self.size)
        return iu.random_crop(image, self.size, np.random.default_rng([self.seed, position, 13]), flip=True)

    def fixed_crops(self, n: int) -> list[np.ndarray]:
        """Centre crops of the first `n` readable files (in name order): the rows of every snapshot."""
        crops = []
        for path in self.files:
            if len(crops) == n:
                break
            if str(path) in self.bad:
                continue
            try:
                crops.append(iu.square_crop(iu.load_image(path), self.size))
            except iu.ImageError as e:
                self.report_bad(path, e)
        return crops

    def batch(self, position: int, batch_size: int) -> tuple[np.ndarray, int]:
        """`batch_size` crops starting at `position`; returns them and the position after the last item used."""
        crops, tried = [], 0
        while len(crops) < batch_size:
            if tried > len(self.files):
                raise RunError(f"{self.folder}: no readable content images")
            path = self.file_at(position)
            position += 1
            tried += 1
            if str(path) in self.bad:
                continue
            try:
                crops.append(self.crop(path, position - 1))
                tried = 0
            except iu.ImageError as e:
                self.report_bad(path, e)
        return np.stack(crops), position

    def report_bad(self, path: Path, error):
        self.bad.add(str(path))
        print(f"skipped content {error}", file=sys.stderr, flush=True)
        if self.bad_list:
            iu.atomic_write_text(self.bad_list, "".join(f"{b}\n" for b in sorted(self.bad)))


def content_dataset(stream: ContentStream, position: int, batch_size: int):
    """A tf.data pipeline over the stream from `position`: batches of crops with the position after each, decoded
    ahead of the training step (prefetch). The position travels with its batch, so the checkpoint saved after a step
    names exactly the next unread item."""
    import tensorflow as tf

    def batches():
        pos = position
        while True:
            crops, pos = stream.batch(pos, batch_size)
            yield crops, pos

    signature = (tf.TensorSpec((batch_size, stream.size, stream.size, 3), tf.float32),
                 tf.TensorSpec((), tf.int64))
    return tf.data.Dataset.from_generator(batches, output_signature=signature).prefetch(2)


# --------------------------------------------------------------------------------------------------------------------
# Training

def set_precision(precision: str):
    import keras

    if precision not in ("float32", "mixed_bfloat16", "mixed_float16"):
        raise ValueError(f"unknown --precision '{precision}'")
    keras.mixed_precision.set_global_policy(precision)


def make_train_step(net, vgg, content_vgg, optimizer, config: StylizerConfig, layers, strategy):
    """One compiled step over the global batch, split across the strategy's replicas; each replica's loss is its
    share of the global-batch mean and Keras sums the replicas' gradients."""
    import tensorflow as tf

    from perceptual import content_loss, gram_matrix, style_loss, total_variation_loss

    global_batch = float(config.batch_size)

    def replica_step(content, weights, target_grams):
        with tf.GradientTape() as tape:
            out = net({"image": content, "weights": weights}, training=True)
            feats = vgg(out)
            target = content_vgg(content)[config.content_layer]
            c = content_loss(feats[config.content_layer], target)
            s = style_loss({name: gram_matrix(feats[name]) for name in layers}, target_grams, layers)
            tv = total_variation_loss(out)
            loss = tf.reduce_sum(config.content_weight * c + config.style_weight * s + config.tv_weight * tv)
            loss = loss / global_batch
            scaled = optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss
        grads = tape.gradient(scaled, net.trainable_variables)
        optimizer.apply_gradients(zip(grads, net.trainable_variables))
        share = lambda v: tf.reduce_sum(v) / global_batch  # noqa: E731
        return {"loss": loss, "content": share(c), "style": share(s), "tv": share(tv)}

    return distributed_step(strategy, replica_step)


def snapshot_weights(num_styles: int, strengths=SNAPSHOT_STRENGTHS) -> np.ndarray:
    """Style weights for a strength sweep between style 0 and style 1 (a single column for one style)."""
    if num_styles == 1:
        return np.ones((1, 1), np.float32)
    w = np.zeros((len(strengths), num_styles), np.float32)
    w[:, 0] = 1.0 - np.asarray(strengths)
    w[:, 1] = strengths
    return w


def stylize_array(net, image: np.ndarray, weights) -> np.ndarray:
    out = net({"image": image[None].astype(np.float32), "weights": np.asarray(weights, np.float32)[None]},
              training=False)
    return np.asarray(out[0], np.float32)


def write_snapshot(run: Run, net, step: int, contents, num_styles: int):
    ws = snapshot_weights(num_styles)
    images = [stylize_array(net, c, w) for c in contents for w in ws]
    iu.save_image(run.snapshot_path(step), iu.image_grid(images, cols=len(ws)))


def train(config: StylizerConfig, run_dir) -> int:
    import keras
    import tensorflow as tf

    from perceptual import vgg_features

    strategy = make_strategy(config.strategy, config.devices, config.logical_cpus)
    chief, task = task_role(strategy)
    set_precision(config.precision)
    layers = list(STYLE_LAYERS)
    run = Run(run_dir, config, chief=chief, task=task)
    with strategy.scope():
        vgg = vgg_features(sorted(set(layers) | {config.content_layer}), name="loss_vgg")
        content_vgg = vgg_features([config.content_layer], name="content_vgg")
    targets = StyleTargets(config, vgg, layers)
    if config.conditioning == "none" and targets.num_styles != 1:
        raise ValueError("--conditioning none is the single-style baseline: give one --style-image")
    stream = ContentStream(config.content, config.size, config.seed, run.path / "bad_content.txt" if chief else None)
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        net = build_stylizer(targets.num_styles, config.conditioning)
        optimizer = keras.optimizers.Adam(config.lr)
        if config.precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(net.trainable_variables)
        position = tf.Variable(0, dtype=tf.int64, name="data_position", trainable=False)
    run.checkpoint(net=net, optimizer=optimizer, data_position=position)
    start = run.restore()
    if chief:
        iu.atomic_write_json(run.path / "styles.json", {"style_names": targets.names,
                                                        "num_styles": targets.num_styles})
    train_step = make_train_step(net, vgg, content_vgg, optimizer, config, layers, strategy)
    snap_contents = stream.fixed_crops(3)
    if start:
        print(f"resuming {run.path} from step {start} (content position {int(position.numpy())})", flush=True)
    batches = iter(content_dataset(stream, int(position.numpy()), config.batch_size))

    def step_fn(step):
        content, next_position = (v.numpy() for v in next(batches))
        weights, grams = targets.batch(np.random.default_rng([config.seed, step, 5]), config.batch_size)
        grams = {k: v.astype(np.float32) for k, v in grams.items()}
        metrics = train_step(*per_replica(strategy, config.batch_size, content, weights.astype(np.float32), grams))
        position.assign(next_position)  # saved with the checkpoint: resume reads the next unread content item
        return metrics

    status = run.train_loop(start, config.steps, config, step_fn,
                            lambda step: write_snapshot(run, net, step, snap_contents, targets.num_styles))
    if status == "nan":
        return 1
    if stream.bad:
        print(f"skipped {len(stream.bad)} unreadable content files (listed in {run.path / 'bad_content.txt'})")
    return 0


# --------------------------------------------------------------------------------------------------------------------
# Loading and stylizing

def load_stylizer(run_dir):
    """(net, config, style names) of a trained run folder; RunError with a one-line reason otherwise."""
    config = read_config(run_dir, StylizerConfig, "stylizer")
    styles_path = Path(run_dir) / "styles.json"
    if not styles_path.exists():
        raise RunError(f"{run_dir}: not a stylizer run folder (no styles.json)")
    names = json.loads(styles_path.read_text())["style_names"]
    set_precision("float32")  # inference in float32 whatever the training precision
    net = build_stylizer(len(names), config.conditioning)
    restore_latest(run_dir, net=net)
    return net, config, names


def parse_weights(num_styles: int, strength=None, weights=None) -> np.ndarray:
    if weights is not None:
        try:
            w = np.array([float(v) for v in weights.split(",")], np.float32)
        except ValueError:
            raise ValueError(f"--weights takes comma-separated numbers, got '{weights}'") from None
        if len(w) != num_styles:
            raise ValueError(f"--weights needs {num_styles} values (one per style), got {len(w)}")
        if np.any(w < 0) or not np.isclose(w.sum(), 1.0, atol=1e-3):
            raise ValueError("--weights must be non-negative and sum to 1")
        return w
    s = 1.0 if strength is None else float(strength)
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"--strength must be in [0, 1], got {s}")
    return snapshot_weights(num_styles, [s])[0]


def preserve_color(stylized: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Luminance-only transfer (Gatys et al. 2016, arXiv 1606.05897): the stylized image's luma with the content's
    chroma, in YCrCb."""
    import cv2

    y = cv2.cvtColor(stylized.astype(np.float32), cv2.COLOR_RGB2YCrCb)
    c = cv2.cvtColor(content.astype(np.float32), cv2.COLOR_RGB2YCrCb)
    c[..., 0] = y[..., 0]
    return np.clip(cv2.cvtColor(c, cv2.COLOR_YCrCb2RGB), 0.0, 1.0)


def stylize_files(net, names, inputs, out: Path, weights, sweep: int = 0, keep_color: bool = False,
                  max_size: int | None = None, tile: int | None = None) -> tuple[int, int]:
    """Stylize files and folders into `out`; returns (written, failed)."""
    files = []
    for path in inputs:
        path = Path(path)
        files.extend(iu.list_images(path) if path.is_dir() else [path])
    written = failed = 0
    for f in files:
        try:
            image = iu.load_image(f)
        except iu.ImageError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        if max_size:
            image = iu.resize_max_side(image, max_size)
        if sweep:
            ws = snapshot_weights(len(names), np.linspace(0.0, 1.0, sweep))
            frames = [stylize_array(net, image, w) for w in ws]
            if keep_color:
                frames = [preserve_color(fr, image) for fr in frames]
            target = out / f"{f.stem}_sweep.png"
            iu.save_image(target, iu.image_grid(frames, cols=len(frames), pad=0))
        else:
            result = tiled_stylize(net, image, weights, tile) if tile else stylize_array(net, image, weights)
            if keep_color:
                result = preserve_color(result, image)
            target = out / f"{f.stem}.png"
            iu.save_image(target, result)
        print(f"wrote {target}")
        written += 1
    return written, failed


# --------------------------------------------------------------------------------------------------------------------
# Huge images: overlapping tiles that share the whole image's instance-norm statistics

def instance_norms(net) -> list:
    return [layer for layer in net.layers if isinstance(layer, _layers().InstanceNorm)]


def _ramp(n: int, overlap: int, start: bool, end: bool) -> np.ndarray:
    """1 inside, rising linearly over `overlap` pixels at an edge that another tile overlaps."""
    w = np.ones(n, np.float32)
    if overlap > 0:
        ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        if start:
            w[:overlap] = np.minimum(w[:overlap], ramp)
        if end:
            w[-overlap:] = np.minimum(w[-overlap:], ramp[::-1])
    return w


def _starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def tiled_stylize(net, image: np.ndarray, weights, tile: int, overlap: int | None = None, margin: int = 32,
                  stats_max_side: int = 1024) -> np.ndarray:
    """Stylize an image of any size in overlapping `tile` x `tile` pieces blended with linear ramps.

    Instance norm normalises by each input's own statistics, so tiles processed on their own would each get a
    different look. A first pass over the whole image (or, when its longer side exceeds `stats_max_side`, over a
    copy shrunk to that size) records every norm layer's statistics; every tile is then normalised with those.
    Each tile also sees `margin` pixels of real context on every side, cropped away afterwards."""
    h, w = image.shape[:2]
    overlap = tile // 4 if overlap is None else overlap
    norms = instance_norms(net)
    probe = image if max(h, w) <= stats_max_side else iu.resize_max_side(image, stats_max_side)
    for n in norms:
        n.record = True
    try:
        stylize_array(net, probe, weights)
        stats = [n.recorded for n in norms]
    finally:
        for n in norms:
            n.record, n.recorded = False, None
    out = np.zeros((h, w, 3), np.float32)
    total = np.zeros((h, w, 1), np.float32)
    stride = max(1, tile - overlap)
    try:
        for n, st in zip(norms, stats):
            n.fixed_stats = st
        for top in _starts(h, tile, stride):
            for left in _starts(w, tile, stride):
                bottom, right = min(top + tile, h), min(left + tile, w)
                t0, l0 = max(0, top - margin), max(0, left - margin)
                piece = stylize_array(net, image[t0:min(h, bottom + margin), l0:min(w, right + margin)], weights)
                piece = piece[top - t0:top - t0 + bottom - top, left - l0:left - l0 + right - left]
                wy = _ramp(bottom - top, overlap, top > 0, bottom < h)
                wx = _ramp(right - left, overlap, left > 0, right < w)
                weight = (wy[:, None] * wx[None, :])[..., None]
                out[top:bottom, left:right] += piece * weight
                total[top:bottom, left:right] += weight
    finally:
        for n in norms:
            n.fixed_stats = None
    return out / np.maximum(total, 1e-8)


# --------------------------------------------------------------------------------------------------------------------
# Video

def stylize_video(net, names, src: Path, dst: Path, strength_at, max_size: int | None = None) -> int:
    """Stylize every frame of `src` into `dst` (mp4) with the same frame count, size and fps. `strength_at(i, n)`
    gives the style weights of frame i of n. Returns the number of frames written."""
    import cv2
    import keras

    cap = cv2.VideoCapture(str(src))
    if not cap.isOpened():
        raise iu.ImageError(src, "cannot open as a video")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.partial{dst.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        cap.release()
        raise iu.ImageError(dst, "cannot write an mp4 here")
    bar = keras.utils.Progbar(n or None, unit_name="frame")
    written = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            rgb = frame[..., ::-1].astype(np.float32) / 255.0
            small = iu.resize_max_side(rgb, max_size) if max_size else rgb
            result = stylize_array(net, small, strength_at(written, max(n, written + 1)))
            if result.shape[:2] != (height, width):
                result = iu.resize(result, height, width)
            writer.write(np.ascontiguousarray(iu.to_uint8(result)[..., ::-1]))
            written += 1
            bar.update(written)
    finally:
        cap.release()
        writer.release()
    if not written:
        tmp.unlink(missing_ok=True)
        raise iu.ImageError(src, "no frames could be read")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    Path(tmp).replace(dst)
    return written


def parse_ramp(text: str) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in text.split(":"))
    except ValueError:
        raise ValueError(f"--strength-ramp takes A:B, e.g. 0:1; got '{text}'") from None
    if not (0 <= a <= 1 and 0 <= b <= 1):
        raise ValueError("--strength-ramp values must be in [0, 1]")
    return a, b


# --------------------------------------------------------------------------------------------------------------------
# Export

def export(net, num_styles: int, out: Path, tflite: bool = False) -> list[Path]:
    """A SavedModel whose `serving_default` takes `image` [1, H, W, 3] float32 in [0,1] (any H, W) and `weights`
    [num_styles] float32 and returns {"image": [1, H, W, 3]}; optionally a .tflite of the same function."""
    import shutil
    import tempfile

    import tensorflow as tf

    def make_module(fused: bool):
        for n in instance_norms(net):
            n.fused = fused
        module = tf.Module()
        module.net = net

        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32, name="image"),
                                      tf.TensorSpec([num_styles], tf.float32, name="weights")])
        def serve(image, weights):
            return {"image": net({"image": image, "weights": weights[None]}, training=False)}

        module.serve = serve
        return module

    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        module = make_module(fused=True)
        tf.saved_model.save(module, str(staging / "saved_model"), signatures={"serving_default": module.serve})
        if tflite:
            # TFLite has no fused batch norm in training mode: trace the moments form of instance norm instead.
            from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

            lite = make_module(fused=False)
            # Fold the weights into constants: left as resource variables they are never initialised in a bare
            # interpreter, and every output is NaN.
            frozen = convert_variables_to_constants_v2(lite.serve.get_concrete_function())
            converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
            (staging / "stylizer.tflite").write_bytes(converter.convert())
        staging.chmod(0o755)  # mkdtemp makes it private
        if out.exists():
            shutil.rmtree(out)
        staging.replace(out)
    finally:
        for n in instance_norms(net):
            n.fused = True
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    written.append(out / "saved_model")
    if tflite:
        written.append(out / "stylizer.tflite")
    return written


# --------------------------------------------------------------------------------------------------------------------
# Gatys et al. optimisation: the quality and speed baseline with the same VGG and losses

def optimize_image(content: np.ndarray, styles: list[np.ndarray], blend, iters: int, content_weight: float,
                   style_weight: float, tv_weight: float, lr: float = 0.02, content_layer: str = "relu2_2",
                   log_every: int = 50):
    """Optimise the pixels of an image (initialised from the content) against the content's features and the
    blend of the styles' Grams (like neural-style's -style_blend_weights). Returns (image, history)."""
    import keras
    import tensorflow as tf

    from perceptual import content_loss, gram_matrix, style_loss, total_variation_loss, vgg_features

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


def endpoint_grams(config: StylizerConfig, vgg, layers) -> list[dict]:
    """Gram targets of the two endpoint styles A and B: the style images, or the mean Gram of the sampler's
    samples that are purely A (weights [1, 0, ...]) or purely B."""
    if config.style_images:
        return style_image_grams(config.style_images, config.size, vgg, layers)
    weights, grams, _ = load_sample_styles(Path(config.styles), vgg, layers, quiet=True)
    out = []
    for k in range(min(2, weights.shape[1])):
        pure = np.isclose(weights[:, k], 1.0)
        if not pure.any():
            raise RunError(f"{config.styles}: no samples purely of style {k} (t=0 or t=1) to evaluate against")
        out.append({n: grams[n][pure].mean(0, keepdims=True) for n in layers})
    return out


def evaluate(net, config: StylizerConfig, names, content_dir, strengths: int = 11, limit: int = 16) -> dict:
    import time

    import tensorflow as tf

    from perceptual import LPIPS, content_loss, gram_matrix, style_loss, vgg_features

    layers = list(STYLE_LAYERS)
    vgg = vgg_features(sorted(set(layers) | {config.content_layer}), name="eval_vgg")
    ends = endpoint_grams(config, vgg, layers)
    files = iu.list_images(content_dir)[:limit]
    contents = []
    for f in files:
        try:
            contents.append(iu.square_crop(iu.load_image(f), config.size))
        except iu.ImageError as e:
            print(f"skipped {e}", file=sys.stderr)
    if not contents:
        raise RunError(f"{content_dir}: no readable content images")
    batch = np.stack(contents)
    lpips = LPIPS()
    ts = np.linspace(0.0, 1.0, strengths)
    outputs, rows = [], []
    for t in ts:
        w = snapshot_weights(len(names), [t])[0] if len(names) > 1 else np.ones(1, np.float32)
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
        ax.set_xlabel("strength (weight of style B)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    iu.atomic_write_bytes(out, buf.getvalue())


# --------------------------------------------------------------------------------------------------------------------
# CLI

def _add_train_args(p):
    d = StylizerConfig()
    p.add_argument("--styles", default="", metavar="SAMPLES_DIR", help="a style_sampler.py output folder")
    p.add_argument("--style-image", action="append", default=[], metavar="IMG",
                   help="instead of --styles: one image (single-style baseline) or two (direct Gram mixing)")
    p.add_argument("--content", default=d.content, help="content images, searched recursively")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--conditioning", choices=CONDITIONINGS, default=None,
                   help="default: channels, or none with one --style-image")
    p.add_argument("--size", type=int, default=d.size)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--precision", choices=("float32", "mixed_bfloat16", "mixed_float16"), default=d.precision)
    p.add_argument("--content-layer", choices=("relu2_2", "relu3_3"), default=d.content_layer)
    p.add_argument("--content-weight", type=float, default=d.content_weight)
    p.add_argument("--style-weight", type=float, default=d.style_weight)
    p.add_argument("--tv-weight", type=float, default=d.tv_weight)
    p.add_argument("--seed", type=int, default=d.seed)
    add_run_args(p, d)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train_args(sub.add_parser("train", help="train (or resume) a stylizer run"))
    p = sub.add_parser("stylize", help="stylize images at any strength")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("inputs", nargs="+", type=Path, help="image files or folders")
    p.add_argument("--out", type=Path, required=True)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--strength", type=float, help="weight of the second style, in [0, 1] (default 1)")
    g.add_argument("--weights", help="one weight per style, comma-separated, summing to 1")
    p.add_argument("--sweep", type=int, default=0, metavar="N", help="write a strip of N strengths from 0 to 1")
    p.add_argument("--preserve-color", action="store_true", help="keep the content's colours (luminance transfer)")
    p.add_argument("--max-size", type=int, help="shrink inputs whose longer side exceeds this first")
    p.add_argument("--tile", type=int, metavar="PX", help="process in overlapping PX tiles (huge images)")
    p.add_argument("--video", action="store_true", help="inputs are videos: write OUT as an mp4 of each")
    p.add_argument("--strength-ramp", metavar="A:B", help="video: sweep the strength from A to B over the clip")
    p = sub.add_parser("export", help="write a SavedModel (and optionally a .tflite) for serving")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tflite", action="store_true")
    p = sub.add_parser("optimize", help="Gatys et al. optimisation baseline with the same VGG and losses")
    p.add_argument("--content", type=Path, required=True)
    p.add_argument("--style", type=Path, action="append", required=True, help="repeat to blend styles")
    p.add_argument("--weights", help="blend weights, one per --style")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--iters", type=int, default=500)
    p.add_argument("--size", type=int, default=512, help="longer side of the result")
    p.add_argument("--lr", type=float, default=0.02)
    d = StylizerConfig()
    p.add_argument("--content-weight", type=float, default=d.content_weight)
    p.add_argument("--style-weight", type=float, default=d.style_weight)
    p.add_argument("--tv-weight", type=float, default=d.tv_weight)
    p = sub.add_parser("evaluate", help="losses, LPIPS and speed across strengths, with a plot")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--content", type=Path, required=True)
    p.add_argument("--strengths", type=int, default=11)
    p.add_argument("--json", type=Path, help="write the result here (default RUN/evaluate.json)")
    args = parser.parse_args(argv)

    try:
        if args.command == "train":
            if bool(args.styles) == bool(args.style_image):
                return iu.fail("give either --styles SAMPLES_DIR or --style-image (once or twice)")
            if len(args.style_image) > 2:
                return iu.fail("--style-image takes one image (single style) or two (direct mixing)")
            if args.steps < 1 or args.batch_size < 1 or args.size < 16:
                return iu.fail("need --steps >= 1, --batch-size >= 1 and --size >= 16")
            conditioning = args.conditioning or ("none" if len(args.style_image) == 1 else "channels")
            values = {**vars(args), "conditioning": conditioning, "styles": str(args.styles),
                      "style_images": tuple(str(Path(s).resolve()) for s in args.style_image),
                      "content": str(Path(args.content))}
            return train(config_from_args(StylizerConfig, argparse.Namespace(**values)), args.run_dir)
        if args.command == "optimize":
            return _optimize_command(args)
        net, config, names = load_stylizer(args.run_dir)
        if args.command == "export":
            for path in export(net, len(names), args.out, args.tflite):
                print(f"wrote {path}")
            return 0
        if args.command == "evaluate":
            result = evaluate(net, config, names, args.content, args.strengths)
            target = args.json or args.run_dir / "evaluate.json"
            iu.atomic_write_json(target, result)
            plot_evaluation(result, target.with_suffix(".png"))
            for r in result["per_strength"]:
                print("  ".join(f"{k} {v:.4g}" for k, v in r.items()))
            if "spearman_strength_vs_style_loss_to_A" in result:
                print(f"spearman(strength, style loss to A) = {result['spearman_strength_vs_style_loss_to_A']:.3f}")
            print(f"wrote {target} and {target.with_suffix('.png')}")
            return 0
        if args.sweep and args.sweep < 2:
            return iu.fail("--sweep needs at least 2 strengths")
        if args.tile is not None and args.tile < 32:
            return iu.fail("--tile must be at least 32 pixels")
        weights = parse_weights(len(names), args.strength, args.weights)
        if args.video:
            ramp = parse_ramp(args.strength_ramp) if args.strength_ramp else None

            def strength_at(i, n):
                if ramp is None:
                    return weights
                return parse_weights(len(names), ramp[0] + (ramp[1] - ramp[0]) * i / max(n - 1, 1))

            failed = 0
            for src in args.inputs:
                dst = args.out if args.out.suffix.lower() == ".mp4" else args.out / f"{src.stem}.mp4"
                try:
                    n = stylize_video(net, names, src, dst, strength_at, args.max_size)
                    print(f"wrote {dst}: {n} frames")
                except iu.ImageError as e:
                    print(f"error: {e}", file=sys.stderr)
                    failed += 1
            return 1 if failed else 0
        written, failed = stylize_files(net, names, args.inputs, args.out, weights, args.sweep,
                                        args.preserve_color, args.max_size, args.tile)
        if args.tile:
            import resource
            print(f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
        if failed:
            return iu.fail(f"{failed} of {written + failed} inputs failed", code=1)
        if not written:
            return iu.fail("no images found in the inputs")
    except (iu.ImageError, RunError, ValueError) as e:
        return iu.fail(str(e))
    return 0


def _optimize_command(args) -> int:
    import time

    content = iu.resize_max_side(iu.load_image(args.content), args.size)
    styles = [iu.resize_max_side(iu.load_image(p), args.size) for p in args.style]
    blend = [1.0] * len(styles)
    if args.weights:
        blend = [float(v) for v in args.weights.split(",")]
        if len(blend) != len(styles) or min(blend) < 0 or sum(blend) <= 0:
            return iu.fail("--weights needs one non-negative weight per --style")
    t0 = time.perf_counter()
    image, history = optimize_image(content, styles, blend, args.iters, args.content_weight, args.style_weight,
                                    args.tv_weight, args.lr)
    seconds = time.perf_counter() - t0
    iu.save_image(args.out, image)
    print(f"wrote {args.out}: style loss {history[0]['style']:.4g} -> {history[-1]['style']:.4g}, content loss "
          f"{history[0]['content']:.4g} -> {history[-1]['content']:.4g} in {seconds:.1f} s "
          f"({seconds / max(args.iters, 1) * 1000:.0f} ms/iter)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
