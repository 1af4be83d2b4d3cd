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
import hashlib
import io
import json
import math
import sys
import types
from pathlib import Path

import numpy as np

import image_utilities as iu
from run_dir import NonFiniteLoss, Run, RunError, config_from_args

ROOT = Path(__file__).resolve().parent
DEFAULT_CONTENT = ROOT / "res" / "coco" / "train2014" / "train2014"
STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
CONDITIONINGS = ("channels", "balance", "cin", "none")
SNAPSHOT_STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
RESUME_SAFE = ("steps", "log_every", "snapshot_every", "checkpoint_every")


@dataclasses.dataclass(frozen=True)
class StylizerConfig:
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
    log_every: int = 10
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
            dtype = x.dtype
            x = tf.cast(x, tf.float32)
            shape = tf.shape(x)
            b, h, w, c = shape[0], shape[1], shape[2], shape[3]
            view = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, h, w, b * c])
            normed, _, _ = tf.compat.v1.nn.fused_batch_norm(view, tf.ones([b * c]), tf.zeros([b * c]),
                                                            epsilon=self.epsilon, is_training=True)
            x = tf.transpose(tf.reshape(normed, [h, w, b, c]), [2, 0, 1, 3])
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
            return tf.pad(x, [[0, 0], [0, ph], [0, pw], [0, 0]], mode="REFLECT")

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
            planes = tf.ones([shape[0], shape[1], shape[2], 1], image.dtype) * tf.cast(w, image.dtype)[:, None, None, :]
            return tf.concat([image, planes], axis=-1)

        def get_config(self):
            return {**super().get_config(), "mode": self.mode}

    return types.SimpleNamespace(ReflectionPad=ReflectionPad, InstanceNorm=InstanceNorm, PadToMultiple=PadToMultiple,
                                 CropLike=CropLike, StyleChannels=StyleChannels)


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
        x = layers.UpSampling2D(2, interpolation="nearest")(x)
        x = conv(x, filters, 3)
    x = L.ReflectionPad(4)(x)
    x = layers.Conv2D(3, 9, padding="valid")(x)
    x = layers.Activation("sigmoid", dtype="float32")(x)
    x = L.CropLike()([x, image])
    return keras.Model({"image": image, "weights": weights}, x, name=name)


# --------------------------------------------------------------------------------------------------------------------
# Style targets

def manifest_sha(folder: Path) -> str:
    return hashlib.sha256((folder / "manifest.jsonl").read_bytes()).hexdigest()


def compute_grams(images, vgg, layers, batch_size: int = 8) -> dict[str, np.ndarray]:
    from perceptual import gram_matrix

    out = {name: [] for name in layers}
    for start in range(0, len(images), batch_size):
        feats = vgg(np.stack(images[start:start + batch_size]))
        for name in layers:
            out[name].append(gram_matrix(feats[name]).numpy())
    return {name: np.concatenate(v) for name, v in out.items()}


def load_sample_styles(folder: Path, vgg, layers, quiet=False):
    """Style weights [N, S] and Gram targets {layer: [N, C, C]} of a sampler folder, from the cache grams.npz when
    it matches the manifest, else computed (and cached). Unreadable samples are skipped and counted."""
    folder = Path(folder)
    if not (folder / "manifest.jsonl").exists():
        raise RunError(f"{folder}: not a style sample folder (no manifest.jsonl); run style_sampler.py first")
    entries = iu.read_manifest(folder / "manifest.jsonl")
    if not entries:
        raise RunError(f"{folder / 'manifest.jsonl'}: empty")
    sha = manifest_sha(folder)
    cache = folder / "grams.npz"
    if cache.exists():
        try:
            with np.load(cache) as z:
                if str(z["manifest_sha256"]) == sha and list(z["layers"]) == list(layers):
                    return z["weights"], {name: z[name] for name in layers}, [str(n) for n in z["style_names"]]
        except (OSError, ValueError, KeyError):
            pass  # a stale or broken cache is simply rebuilt
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
        print(f"computing Gram matrices of {len(images)} style samples ({bad} unreadable skipped) -> {cache}",
              flush=True)
    grams = compute_grams(images, vgg, layers)
    sampler = folder / "sampler.json"
    names = json.loads(sampler.read_text())["style_names"] if sampler.exists() else \
        [f"style_{i}" for i in range(len(weights[0]))]
    weights = np.asarray(weights, np.float32)
    buf = io.BytesIO()
    np.savez(buf, manifest_sha256=sha, layers=np.array(layers), weights=weights, style_names=np.array(names),
             **grams)
    iu.atomic_write_bytes(cache, buf.getvalue())
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
                crops.append(iu.center_crop(iu.resize_short_side(iu.load_image(path), self.size), self.size))
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


def prefetching(stream: ContentStream, position: int, batch_size: int, depth: int = 2):
    """Yield (batch, next position) from a background thread so decoding overlaps the training step."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def worker(pos):
        try:
            while not stop.is_set():
                item = stream.batch(pos, batch_size)
                pos = item[1]
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except Exception as e:  # surfaced in the training loop
            q.put(e)

    thread = threading.Thread(target=worker, args=(position,), daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        stop.set()


# --------------------------------------------------------------------------------------------------------------------
# Training

def set_precision(precision: str):
    import keras

    if precision not in ("float32", "mixed_bfloat16", "mixed_float16"):
        raise ValueError(f"unknown --precision '{precision}'")
    keras.mixed_precision.set_global_policy(precision)


def make_train_step(net, vgg, content_vgg, optimizer, config: StylizerConfig, layers):
    import tensorflow as tf

    from perceptual import content_loss, gram_matrix, style_loss, total_variation_loss

    @tf.function
    def train_step(content, weights, target_grams):
        with tf.GradientTape() as tape:
            out = net({"image": content, "weights": weights}, training=True)
            feats = vgg(out)
            target = content_vgg(content)[config.content_layer]
            c = content_loss(feats[config.content_layer], target)
            s = style_loss({name: gram_matrix(feats[name]) for name in layers}, target_grams, layers)
            tv = total_variation_loss(out)
            loss = tf.reduce_mean(config.content_weight * c + config.style_weight * s + config.tv_weight * tv)
            scaled = optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss
        grads = tape.gradient(scaled, net.trainable_variables)
        optimizer.apply_gradients(zip(grads, net.trainable_variables))
        return {"loss": loss, "content": tf.reduce_mean(c), "style": tf.reduce_mean(s), "tv": tf.reduce_mean(tv)}

    return train_step


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

    set_precision(config.precision)
    layers = list(STYLE_LAYERS)
    run = Run(run_dir, config, resume_safe=RESUME_SAFE)
    vgg = vgg_features(sorted(set(layers) | {config.content_layer}), name="loss_vgg")
    content_vgg = vgg_features([config.content_layer], name="content_vgg")
    targets = StyleTargets(config, vgg, layers)
    if config.conditioning == "none" and targets.num_styles != 1:
        raise ValueError("--conditioning none is the single-style baseline: give one --style-image")
    stream = ContentStream(config.content, config.size, config.seed, run.path / "bad_content.txt")
    keras.utils.set_random_seed(config.seed)
    net = build_stylizer(targets.num_styles, config.conditioning)
    optimizer = keras.optimizers.Adam(config.lr)
    if config.precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(net.trainable_variables)
    position = tf.Variable(0, dtype=tf.int64, name="data_position", trainable=False)
    run.checkpoint(net=net, optimizer=optimizer, data_position=position)
    start = run.restore()
    iu.atomic_write_json(run.path / "styles.json", {"style_names": targets.names, "num_styles": targets.num_styles})
    train_step = make_train_step(net, vgg, content_vgg, optimizer, config, layers)
    snap_contents = stream.fixed_crops(3)
    if start:
        print(f"resuming {run.path} from step {start} (content position {int(position.numpy())})", flush=True)
    step = start
    batches = prefetching(stream, int(position.numpy()), config.batch_size)
    with run:
        run.mark_time(step)
        while step < config.steps:
            content, next_position = next(batches)
            weights, grams = targets.batch(np.random.default_rng([config.seed, step, 5]), config.batch_size)
            metrics = train_step(tf.constant(content), tf.constant(weights, tf.float32),
                                 {k: tf.constant(v, tf.float32) for k, v in grams.items()})
            step += 1
            position.assign(next_position)
            metrics = {k: float(v) for k, v in metrics.items()}
            try:
                run.check_finite(step, metrics)
            except NonFiniteLoss as e:
                print(f"error: {e}", file=sys.stderr, flush=True)
                return 1
            if step % config.log_every == 0 or step == config.steps:
                run.log(step, metrics, config.steps)
            if step % config.snapshot_every == 0 or step == config.steps:
                write_snapshot(run, net, step, snap_contents, targets.num_styles)
            if step % config.checkpoint_every == 0 or step == config.steps:
                run.save(step)
            if run.stop_requested:
                run.save(step)
                print(f"{run.stop_requested}: saved step {step} to {run.checkpoint_dir}; run the same command to "
                      "resume", flush=True)
                return 0
    batches.close()
    if stream.bad:
        print(f"skipped {len(stream.bad)} unreadable content files (listed in {run.path / 'bad_content.txt'})")
    return 0


# --------------------------------------------------------------------------------------------------------------------
# Loading and stylizing

def load_stylizer(run_dir):
    """(net, config, style names) of a trained run folder; RunError with a one-line reason otherwise."""
    import tensorflow as tf

    run_dir = Path(run_dir)
    cfg_path, styles_path = run_dir / "config.json", run_dir / "styles.json"
    if not cfg_path.exists() or not styles_path.exists():
        raise RunError(f"{run_dir}: not a stylizer run folder (no config.json/styles.json)")
    raw = json.loads(cfg_path.read_text())
    fields = {f.name for f in dataclasses.fields(StylizerConfig)}
    config = StylizerConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in fields})
    names = json.loads(styles_path.read_text())["style_names"]
    latest = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    if latest is None:
        raise RunError(f"{run_dir}: no checkpoint; train it first")
    set_precision("float32")  # inference in float32 whatever the training precision
    net = build_stylizer(len(names), config.conditioning)
    try:
        tf.train.Checkpoint(net=net).restore(latest).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        raise RunError(f"{latest}: checkpoint does not match {cfg_path} ({str(e).splitlines()[0][:200]})") from None
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
                  max_size: int | None = None) -> tuple[int, int]:
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
            result = stylize_array(net, image, weights)
            if keep_color:
                result = preserve_color(result, image)
            target = out / f"{f.stem}.png"
            iu.save_image(target, result)
        print(f"wrote {target}")
        written += 1
    return written, failed


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
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--snapshot-every", type=int, default=d.snapshot_every)
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)


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
        net, config, names = load_stylizer(args.run_dir)
        if args.sweep and args.sweep < 2:
            return iu.fail("--sweep needs at least 2 strengths")
        weights = parse_weights(len(names), args.strength, args.weights)
        written, failed = stylize_files(net, names, args.inputs, args.out, weights, args.sweep,
                                        args.preserve_color, args.max_size)
        if failed:
            return iu.fail(f"{failed} of {written + failed} inputs failed", code=1)
        if not written:
            return iu.fail("no images found in the inputs")
    except (iu.ImageError, RunError, ValueError) as e:
        return iu.fail(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
