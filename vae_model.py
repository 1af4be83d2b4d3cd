"""The style VAE's networks and losses (vae_keras.py trains them; see its docstring for the commands).

    build_encoder / build_decoder   Keras models: crops -> (mean, logvar) of z;  (z[, noise]) -> logits
    build_texture_decoder           the decoder whose layout comes from the noise alone (--decoder texture)
    VAE                             the pair, with numpy encode / decode / reconstruct
    kl_divergence, bce_from_logits, reconstruction_loss      per-example ELBO terms
    texture_features, path_loss, endpoint_loss, diversity_loss   the continuum terms
    decoder_noise, interpolate      the arrangement noise of a sample, and paths between latents

Decoder: z -> small dense seed map (size/32 square) -> five nearest-upsample conv blocks -> 3-channel logits. There
is no final fully connected layer (the original design: it is what made 224 px fit in GPU memory). With
`noise_channels > 0` the decoder also takes a spatial noise image, injected (through a learned 1x1 conv, as in
StyleGAN's noise inputs, Karras et al. 2019, arXiv 1812.04948) at every resolution: the code z says *which* style,
the noise *where* its strokes fall. Without it, a code of a few dozen numbers has to carry both, and a texture loss
(which ignores where strokes fall) lets the decoder collapse every code of a style onto one picture. Measured on
2026-11-29, this `seed` decoder learned to ignore the injected noise; the `texture` decoder has no other spatial input.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from run_config import LR_SCHEDULES, RunControl

LOGVAR_RANGE = (-10.0, 6.0)  # clamping keeps exp(logvar) finite early in training
PERCEPTUAL_LAYERS = {"relu1_2": 1.0, "relu2_2": 1.0, "relu3_3": 1.0}  # DFC-VAE uses early and middle layers
PERCEPTUAL_PIXEL_WEIGHT = 0.1
# `gram`: texture statistics (Gram matrices, as the stylizer's style loss) dominate, with a light feature and pixel
# term to keep the layout. A 32-256 number code cannot pin down the random phase of brush strokes, so pixel and
# feature losses average them into blur; Gram matching lets the decoder draw sharp texture with any phase.
GRAM_WEIGHTS = {"gram": 10.0, "feature": 0.1, "pixel": 0.1}
# The continuum terms compare Grams at the layers the gram reconstruction already computes: adding the stylizer's
# relu4_3 runs VGG's fourth block on every decode, and it was measured and not adopted (docs/results-continuum.md).
TEXTURE_LAYERS = ("relu1_2", "relu2_2", "relu3_3")
DIVERSITY_LAYERS = ("relu2_2", "relu3_3")


# mixed_float16 would need loss scaling inside the clipped, all-reduced step; bfloat16 has float32's range.
VAE_PRECISIONS = ("float32", "mixed_bfloat16")
RECONSTRUCTIONS = ("mse", "bce", "perceptual", "gram")
DECODERS = ("seed", "texture")


@dataclasses.dataclass(frozen=True)
class VAEConfig(RunControl):
    """A VAE run's settings; the defaults are the recommended route (a continuum between the styles: texture
    decoder, Gram reconstruction, the path, endpoint and diversity terms), at a GPU budget. Recipes (recipes/*.toml)
    change budgets; the original design's choices (recon mse/bce/perceptual, the seed decoder) stay settable."""
    styles: tuple = ()
    size: int = 128                   # crop size (the texture window), a multiple of 32
    style_size: int = 256             # style images' shorter side first: the scale the stylizer uses them at
    latent_dim: int = 32
    width: int = 32
    recon: str = "gram"
    beta: float = 0.02
    beta_warmup: int = 0
    steps: int = 10000
    batch_size: int = 16
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    clip_norm: float = 100.0
    seed: int = 0
    crop_scale: tuple = (0.7, 1.5)
    encode_crops: int = 256
    noise_channels: int = 4
    path_weight: float = 1.0
    endpoint_weight: float = 1.0
    diversity_weight: float = 10.0
    precision: str = "mixed_bfloat16"
    feature_weight: float = 0.0       # gram recon's layout term (GRAM_WEIGHTS["feature"] with the seed decoder)
    decoder: str = "texture"

    CHOICES = {"recon": RECONSTRUCTIONS, "decoder": DECODERS, "lr_schedule": LR_SCHEDULES,
               "precision": VAE_PRECISIONS}
    AT_LEAST = {"size": 32, "latent_dim": 1, "width": 1, "steps": 1, "batch_size": 1, "lr": 0.0, "beta": 0.0,
                "beta_warmup": 0, "clip_norm": 0.0, "style_size": 0, "encode_crops": 1, "noise_channels": 0,
                "path_weight": 0.0, "endpoint_weight": 0.0, "diversity_weight": 0.0, "feature_weight": 0.0}
    # What a run folder made before the defaults became the recommended route holds for a field its config.json
    # lacks (the defaults of the day the field was added).
    MISSING_MEANS = {"recon": "mse", "latent_dim": 256, "beta": 1.0, "batch_size": 8, "lr": 3e-4,
                     "lr_schedule": "constant", "encode_crops": 512, "noise_channels": 0, "path_weight": 0.0,
                     "endpoint_weight": 0.0, "diversity_weight": 0.0, "precision": "float32",
                     "feature_weight": GRAM_WEIGHTS["feature"], "decoder": "seed", "size": 224, "style_size": 0,
                     "steps": 2000}
    # Settings measured and removed, with the one value the code still has: a run made with another is refused.
    REMOVED = {"decoder_padding": "zeros", "endpoint_unbiased": False, "texture_layers": list(TEXTURE_LAYERS)}

    @property
    def continuum(self) -> bool:
        return bool(self.path_weight or self.endpoint_weight or self.diversity_weight)

    def vgg_layers(self) -> list[str]:
        if self.recon not in ("perceptual", "gram"):
            return []
        return sorted(set(PERCEPTUAL_LAYERS) | (set(TEXTURE_LAYERS) if self.continuum else set()))


def check_size(size: int) -> int:
    """The number of stride-2 stages for a crop size; sizes must be positive multiples of 32."""
    if size % 32 or size < 32:
        raise ValueError(f"--size must be a positive multiple of 32, got {size}")
    return 5


def build_encoder(size: int, latent_dim: int, width: int = 32):
    import keras
    from keras import layers

    x_in = keras.Input((size, size, 3), name="image")
    x = x_in * 2.0 - 1.0
    for i, ch in enumerate([width, width * 2, width * 4, width * 8, width * 8][:check_size(size)]):
        x = layers.Conv2D(ch, 4, strides=2, padding="same", name=f"down{i}")(x)
        x = layers.LeakyReLU(0.2)(layers.BatchNormalization(synchronized=True, name=f"down{i}_bn")(x))
        x = layers.Conv2D(ch, 3, padding="same", name=f"down{i}_refine")(x)
        x = layers.LeakyReLU(0.2)(layers.BatchNormalization(synchronized=True, name=f"down{i}_refine_bn")(x))
    x = layers.Flatten()(x)
    mean = layers.Dense(latent_dim, name="z_mean")(x)
    logvar = layers.Dense(latent_dim, name="z_logvar")(x)
    logvar = keras.ops.clip(logvar, *LOGVAR_RANGE)
    return keras.Model(x_in, {"mean": mean, "logvar": logvar}, name="encoder")


# The texture decoder's channels (times --width): its first block, at size / 2**len, and each upsampling block but the
# last, which has --width.
TEXTURE_DECODER_CHANNELS = (4, 2, 1)
TEXTURE_MULTIPLE = 2 ** len(TEXTURE_DECODER_CHANNELS)  # the texture decoder draws sizes that are multiples of this


def build_decoder(size: int, latent_dim: int, width: int = 32, noise_channels: int = 0, kind: str = "seed"):
    """z (and, with noise_channels, a size x size x noise_channels noise image) -> logits [size, size, 3].
    `seed`: a dense layer makes a small seed map from z and convolutions upsample it (the layout comes from z);
    `texture`: build_texture_decoder (the layout comes from the noise)."""
    import keras
    from keras import layers

    if kind == "texture":
        return build_texture_decoder(size, latent_dim, width, noise_channels)
    if kind != "seed":
        raise ValueError(f"unknown decoder '{kind}': use {' or '.join(DECODERS)}")

    seed = size // 32
    z = keras.Input((latent_dim,), name="z")
    inputs = [z]
    x = layers.Dense(seed * seed * width * 8, name="seed_map")(z)
    x = layers.Reshape((seed, seed, width * 8))(x)
    x = layers.LeakyReLU(0.2)(x)
    if noise_channels:
        noise = keras.Input((size, size, noise_channels), name="noise")
        inputs.append(noise)
    for i, ch in enumerate([width * 8, width * 4, width * 2, width, width]):
        x = layers.UpSampling2D(2, interpolation="nearest", name=f"up{i}")(x)
        x = layers.Conv2D(ch, 3, padding="same", name=f"up{i}_conv")(x)
        if noise_channels:
            # The noise at this block's resolution: block-averaged, rescaled to unit variance.
            n = pooled_noise(noise, size, seed * 2 ** (i + 1), f"noise{i}_pool")
            x = x + layers.Conv2D(ch, 1, use_bias=False, kernel_initializer="zeros", name=f"noise{i}")(n)
        x = layers.LeakyReLU(0.2)(layers.BatchNormalization(synchronized=True, name=f"up{i}_bn")(x))
        x = layers.Conv2D(ch, 3, padding="same", name=f"up{i}_refine")(x)
        x = layers.LeakyReLU(0.2)(layers.BatchNormalization(synchronized=True, name=f"up{i}_refine_bn")(x))
    logits = layers.Conv2D(3, 3, padding="same", name="logits")(x)
    return keras.Model(inputs if noise_channels else z, logits, name="decoder")


def pooled_noise(noise, size: int, resolution: int, name: str):
    """The noise image at `resolution`: block-averaged and rescaled to unit variance."""
    from keras import layers

    factor = size // resolution
    return layers.AveragePooling2D(factor, name=name)(noise) * float(factor) if factor > 1 else noise


def build_texture_decoder(size: int, latent_dim: int, width: int, noise_channels: int):
    """A texture generator in which the noise image is the only source of layout and z sets the texture: the noise,
    pooled to size/8, goes through convolutions and three nearest-upsample blocks (the same noise, pooled to each
    block's resolution, added through a 1x1 convolution), and
    every normalisation is an instance norm whose per-channel scale and shift come from z (conditional instance
    norm, Dumoulin et al. 2017, arXiv 1610.07629; multi-scale noise input as in Ulyanov et al.'s texture networks,
    arXiv 1603.03417). A constant input to a convolution gives a constant map, so the decoder cannot draw one fixed
    picture per code: different noise, different arrangement; along a path of codes under one noise, the arrangement
    stays and only the statistics move. Instance norms use each image's own statistics in training and sampling
    alike (no stored statistics to go stale). Fully convolutional: the noise image may be any multiple of 8 in
    height and width, and the picture is that large. Its convolutions pad with zeros ("same"); mirroring the maps
    instead, so that no layer knows where the border is, measured no better (docs/results-continuum.md)."""
    import keras
    from keras import layers

    from stylizer_net import ModulatedInstanceNorm

    if noise_channels < 1:
        raise ValueError("the texture decoder draws its layout from noise: give it --noise-channels >= 1")
    z = keras.Input((latent_dim,), name="z")
    # Any height and width that are multiples of 8 (the pooling factors depend on `size` only through ratios): a
    # decoder trained on size-px crops can draw its textures at the stylizer's scale (style_sampler --sample-size).
    noise = keras.Input((None, None, noise_channels), name="noise")

    def modulated(x, ch, name):
        # Starts as a plain instance norm (scale 1, shift 0) and learns how z moves each channel.
        scale = layers.Dense(ch, kernel_initializer="zeros", bias_initializer="ones", name=f"{name}_scale")(z)
        shift = layers.Dense(ch, kernel_initializer="zeros", name=f"{name}_shift")(z)
        return layers.LeakyReLU(0.2)(ModulatedInstanceNorm(name=f"{name}_in")([x, scale, shift]))

    def conv3(x, ch, name):
        return layers.Conv2D(ch, 3, padding="same", name=name)(x)

    res = size // TEXTURE_MULTIPLE
    first, *rest = [width * k for k in TEXTURE_DECODER_CHANNELS]
    x = modulated(conv3(pooled_noise(noise, size, res, "start_pool"), first, "start_conv"), first, "start")
    x = modulated(conv3(x, first, "start_refine"), first, "start_refine")
    for i, ch in enumerate(rest + [width]):
        res *= 2
        x = layers.UpSampling2D(2, interpolation="nearest", name=f"up{i}")(x)
        x = conv3(x, ch, f"up{i}_conv")
        x = x + layers.Conv2D(ch, 1, use_bias=False, name=f"noise{i}")(pooled_noise(noise, size, res, f"noise{i}_pool"))
        x = modulated(x, ch, f"up{i}")
        x = modulated(conv3(x, ch, f"up{i}_refine"), ch, f"up{i}_refine")
    return keras.Model([z, noise], conv3(x, 3, "logits"), name="decoder")


def decoder_noise(rng: np.random.Generator, n: int, size: int, channels: int) -> np.ndarray:
    """Standard normal noise images for `n` decodes: the arrangement of the strokes in each."""
    return rng.standard_normal((n, size, size, channels)).astype(np.float32)


class VAE:
    """Encoder + decoder built from a config, with the few operations every module needs."""

    def __init__(self, config):
        self.config = config
        self.noise_channels = config.noise_channels
        self.checkpoint = None  # the checkpoint path load_vae restored
        self.encoder = build_encoder(config.size, config.latent_dim, config.width)
        self.decoder = build_decoder(config.size, config.latent_dim, config.width, self.noise_channels,
                                     config.decoder)

    def decoder_inputs(self, z, noise=None):
        """What the decoder takes: z alone, or [z, noise]. Without given noise a decoder that needs it gets the fixed
        noise of seed 0 for every image (one arrangement, so only the style changes between decodes)."""
        if not self.noise_channels:
            return z
        if noise is None:
            one = decoder_noise(np.random.default_rng(0), 1, self.config.size, self.noise_channels)
            noise = np.repeat(one, len(z), axis=0)
        return [z, noise]

    def encode(self, images):
        """Posterior mean and log-variance for a batch of size x size crops in [0,1]."""
        import tensorflow as tf

        out = self.encoder(np.asarray(images, np.float32), training=False)
        return tuple(tf.cast(out[k], tf.float32).numpy() for k in ("mean", "logvar"))

    def decode(self, z, noise=None):
        """Images in [0,1] for a batch of latents (and, for a decoder with noise inputs, their noise images)."""
        import tensorflow as tf

        z = np.asarray(z, np.float32)
        logits = self.decoder(self.decoder_inputs(z, noise), training=False)
        return tf.sigmoid(tf.cast(logits, tf.float32)).numpy()  # float32 under a mixed training precision too

    def reconstruct(self, images):
        return self.decode(self.encode(images)[0])


# --------------------------------------------------------------------------------------------------------------------
# ELBO terms: per-example values, summed over pixels (or latent dimensions) so that beta keeps its ELBO meaning.

def kl_divergence(mean, logvar):
    """KL(N(mean, exp(logvar)) || N(0, I)) in closed form, per example: [B]."""
    import tensorflow as tf

    return 0.5 * tf.reduce_sum(tf.exp(logvar) + tf.square(mean) - 1.0 - logvar, axis=-1)


def bce_from_logits(logits, target):
    """Sigmoid cross-entropy computed from logits (numerically stable), summed over pixels: [B]."""
    import tensorflow as tf

    per_pixel = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits)
    return tf.reduce_sum(per_pixel, axis=[1, 2, 3])


def reconstruction_loss(kind: str, logits, target, vgg=None, features=None, grams=None,
                        feature_weight: float = GRAM_WEIGHTS["feature"]):
    """Per-example reconstruction loss [B]. `features`, optional, is (VGG of the reconstruction, VGG of the target)
    when the caller already has them; `grams` likewise their Grams at PERCEPTUAL_LAYERS (for `gram`), whose feature
    term `feature_weight` weighs (the crop's own layout, next to its phase-blind Grams)."""
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
        fr, ft = features or (vgg(recon), vgg(target))
        # With --feature-weight 0 (the texture decoder) the feature term is not built at all: 0 x feature would
        # still compute it and its gradient over whole feature maps.
        feature = (sum(w * content_loss(fr[name], ft[name]) for name, w in PERCEPTUAL_LAYERS.items())
                   if kind == "perceptual" or feature_weight else 0.0)
        if kind == "perceptual":
            return (feature + PERCEPTUAL_PIXEL_WEIGHT * mse) * pixels
        gr, gt = grams or ({n: gram_matrix(fr[n]) for n in PERCEPTUAL_LAYERS},
                           {n: gram_matrix(ft[n]) for n in PERCEPTUAL_LAYERS})
        w = GRAM_WEIGHTS
        return (w["gram"] * style_loss(gr, gt, list(PERCEPTUAL_LAYERS)) + feature_weight * feature
                + w["pixel"] * mse) * pixels
    raise ValueError(f"unknown reconstruction loss '{kind}': use mse, bce, perceptual or gram")


# --------------------------------------------------------------------------------------------------------------------
# Continuum terms. Grams are at TEXTURE_LAYERS; each term is per example or per pair, scaled like the
# reconstruction (times the pixel count) so the weights read as multiples of the Gram reconstruction term.

def texture_grams(features, layers=TEXTURE_LAYERS) -> dict:
    from perceptual import gram_matrix

    return {n: gram_matrix(features[n]) for n in layers}


def path_loss(grams_mid, grams_a, grams_b, t, pixels, layers=TEXTURE_LAYERS):
    """Texture Mixer-style path supervision (Yu et al. 2019, arXiv 1901.03447): the decode of lerp(z_a, z_b, t)
    should have the Grams (1-t) G_a + t G_b. Squared L2, whose optimum is the mix itself (the paper's L1 would aim
    at a median). t: [P]; Grams: [P, C, C] per layer. Returns [P]."""
    from perceptual import style_loss

    w = t[:, None, None]
    target = {n: (1.0 - w) * grams_a[n] + w * grams_b[n] for n in layers}
    return GRAM_WEIGHTS["gram"] * style_loss(grams_mid, target, layers) * pixels


def endpoint_loss(grams, labels, style_grams, pixels, layers=TEXTURE_LAYERS):
    """The mean Gram of each style's decodes in the batch against that style's mean Gram over many real crops
    (`style_grams[n]`: [S, C, C]): keeps the population of samples centred on the painting, not just each decode
    near its own crop. Returns a scalar: the sum over the styles present.

    The square of a mean over k decodes is, in expectation, the squared error of the decodes' true mean plus
    their own variance / k, so a large weight also pushes the decodes together. An estimate without that variance
    (the product of the errors of the batch's two halves) measured no closer (docs/results-continuum.md)."""
    import tensorflow as tf

    from perceptual import style_loss

    one_hot = tf.one_hot(labels, tf.shape(style_grams[layers[0]])[0])  # [B, S]

    def style_means(weights, g):  # each style's mean of the rows `weights` picks: [S, C, C]
        return tf.einsum("bs,bcd->scd", weights, g) / tf.maximum(tf.reduce_sum(weights, 0), 1.0)[:, None, None]

    def present(weights):  # [S]: 1 for the styles among the rows `weights` picks
        return tf.cast(tf.reduce_sum(weights, 0) > 0, tf.float32)

    means = {n: style_means(one_hot, grams[n]) for n in layers}
    return GRAM_WEIGHTS["gram"] * tf.reduce_sum(present(one_hot) * style_loss(means, style_grams, layers)) * pixels


def diversity_loss(fake_features, real_features, pixels):
    """Diversity in the spirit of Li et al. 2017 (arXiv 1703.01664), as a hinge: for the pairs (k, k + B/2) of the
    batch (first half against second half), the feature distance between two decodes should be at least that
    between the two real crops they came from. It pushes only when samples are more alike than real crops are (a
    collapsed decoder) and never rewards difference beyond what the paintings show. Returns [pairs]."""
    import tensorflow as tf

    def distance(features, name):
        first, second = tf.split(tf.cast(features[name], tf.float32), 2)
        return tf.reduce_mean(tf.square(first - second), axis=[1, 2, 3])

    gap = sum(tf.nn.relu(distance(real_features, n) - distance(fake_features, n)) for n in DIVERSITY_LAYERS)
    return gap * pixels


# --------------------------------------------------------------------------------------------------------------------
# Paths between latents

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
