"""The transformation network of the stylizer: Johnson et al. 2016 ("Perceptual Losses for Real-Time Style Transfer
and Super-Resolution", arXiv 1603.08155) conditioned on style weights.

- Layers (module level, registered for Keras serialization): ReflectionPad, NearestUpsample, PadToMultiple,
  CropLike, StyleChannels, InstanceNorm with its inference modes, ModulatedInstanceNorm (scale and shift given
  per image: the texture VAE's decoder uses it) and BlockedConv2D (the last 9x9 convolution on a space-to-depth
  view), the context managers `recording_statistics`,
  `fixed_statistics` (seamless tiles) and `unfused_norms` (TFLite export).
- `build_stylizer(num_styles, conditioning)`: the named keras.Model {"image", "weights"} -> image.
- `strength_weights`: a strength in [0, 1] as the network's style weights.

Checkpoints name variables by layer class and order: renaming a class, or adding, removing or reordering layers in
`build_stylizer`, makes old run folders unloadable.
"""
from __future__ import annotations

import contextlib

import keras
import numpy as np
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
    """Reflection padding: avoids the dark borders zero padding paints into stylized images.

    Outside training the border rows and columns are mirrored slices concatenated to the image, 1.5-2.1x faster on
    a CPU than TensorFlow's MirrorPad (which took over a tenth of a 512x512 forward pass) and exactly equal; in
    training MirrorPad stays: with its gradient it is 1.1-1.4x faster than the slices (benchmarks/micro_ops.py)."""

    def __init__(self, pad, **kw):
        super().__init__(**kw)
        self.pad = pad

    def call(self, x, training=None):
        p = self.pad
        if training:
            return tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")
        x = tf.concat([tf.reverse(x[:, 1:p + 1], [1]), x, tf.reverse(x[:, -p - 1:-1], [1])], 1)
        return tf.concat([tf.reverse(x[:, :, 1:p + 1], [2]), x, tf.reverse(x[:, :, -p - 1:-1], [2])], 2)

    def compute_output_shape(self, input_shape):  # so that Keras need not trace call() on an input of unknown size
        b, h, w, c = input_shape
        return b, None if h is None else h + 2 * self.pad, None if w is None else w + 2 * self.pad, c

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}


class PadToMultiple(layers.Layer):
    """Reflect-pad height and width up to a multiple of `m` (two stride-2 stages need 4)."""

    def __init__(self, m=4, **kw):
        super().__init__(**kw)
        self.m = m

    def call(self, x):
        shape = tf.shape(x)
        ph, pw = (-shape[1]) % self.m, (-shape[2]) % self.m
        return with_channels(tf.pad(x, [[0, 0], [0, ph], [0, pw], [0, 0]], mode="REFLECT"), x.shape[-1])

    def get_config(self):
        return {**super().get_config(), "m": self.m}


class CropLike(layers.Layer):
    """Crop the first input to the height and width of the second (undoes PadToMultiple)."""

    def call(self, inputs):
        x, ref = inputs
        shape = tf.shape(ref)
        return x[:, :shape[1], :shape[2], :]


def resize_like(values, x):
    """A per-pixel map [1, H, W, K] (at the padded input's size) resized to the height and width of activation `x`
    (bilinear, antialiased when shrinking), float32."""
    shape = tf.shape(x)
    return tf.image.resize(tf.cast(values, tf.float32), [shape[1], shape[2]], antialias=True)


class StyleChannels(layers.Layer):
    """Constant planes after RGB: one per style weight (`channels`) or the weight of style B (`balance`)."""

    def __init__(self, mode, **kw):
        super().__init__(**kw)
        self.mode = mode

    _pixel_weights = None  # per_pixel_weights(): [1, H, W, S] weights per pixel instead of the constant planes

    def call(self, inputs):
        image, weights = inputs
        count = 1 if self.mode == "balance" else weights.shape[-1]
        if self._pixel_weights is not None:
            planes = tf.cast(resize_like(self._pixel_weights, image)[..., weights.shape[-1] - count:], image.dtype)
        else:
            shape = tf.shape(image)
            ones = tf.ones([shape[0], shape[1], shape[2], 1], image.dtype)
            planes = ones * tf.cast(weights[:, weights.shape[-1] - count:], image.dtype)[:, None, None, :]
        return with_channels(tf.concat([image, planes], axis=-1), image.shape[-1] + count)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


# --------------------------------------------------------------------------------------------------------------------
# Instance norm and its inference modes

# bfloat16 activations go into the fused kernel as they are (it keeps its statistics, scale and offset in float32):
# in the 512x512 bfloat16 forward the casts to float32 and back took as much time as the norms themselves.
# False restores the cast path (tests compare the two; benchmarks/micro_ops.py times them). Read when a function is
# traced: functions traced before a change keep the path they were traced with.
NATIVE_BFLOAT16_NORM = True


def norm_input(x):
    """What fused_instance_norm gets for activations x: x itself if bfloat16 (NATIVE_BFLOAT16_NORM), else float32."""
    return x if (x.dtype == tf.bfloat16 and NATIVE_BFLOAT16_NORM) else tf.cast(x, tf.float32)


def fused_instance_norm(x, channels: int, scale=None, offset=None, epsilon: float = 1e-5):
    """(x - mean) / std * scale + offset per image and channel of a float32 or bfloat16 [B, H, W, C] batch (scale and
    offset float32 [B, C]; none: 1 and 0), by one fused batch norm over the [1, H, W, B*C] view of the batch: each
    image's channels are separate "channels", so the batch statistics are exactly per-image statistics, and the scale
    and shift ride in the same kernel (forward and gradient). Returns x's dtype. `channels`: C, restored as a literal
    in the result's shape."""
    shape = tf.shape(x)
    b, h, w, c = shape[0], shape[1], shape[2], shape[3]
    scale = tf.ones([b * c]) if scale is None else tf.reshape(scale, [b * c])
    offset = tf.zeros([b * c]) if offset is None else tf.reshape(offset, [b * c])
    view = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, h, w, b * c])
    normed, _, _ = tf.compat.v1.nn.fused_batch_norm(view, scale, offset, epsilon=epsilon, is_training=True)
    return with_channels(tf.transpose(tf.reshape(normed, [h, w, b, c]), [2, 0, 1, 3]), channels)


class InstanceNorm(layers.Layer):
    """Instance normalisation (Ulyanov et al. 2016, arXiv 1607.08022) with a learned scale and shift, in one of three
    forms: plain; conditional (`num_styles` > 0: one scale/shift per style mixed by the style weights, Dumoulin et al.
    2017, arXiv 1610.07629); or with a shift from the constant style planes (`planes` > 0: a 1x1 conv of constant
    planes, which is a learned linear map of their values, added after normalisation, where instance norm cannot
    erase it). Statistics are float32, by `fused_instance_norm` (about 0.6x the cost of tf.nn.moments on this CPU).
    The context managers below switch its inference modes."""

    def __init__(self, num_styles=0, planes=0, epsilon=1e-5, **kw):
        super().__init__(**kw)
        self.num_styles, self.planes, self.epsilon = num_styles, planes, epsilon
        self._norm_mode, self._norm_stats = "fused", None
        self._pixel_weights = None  # per_pixel_weights(): [1, H, W, S] at the padded input's size
        self._level_coeffs = None   # with mode "mixed": [1, H, W, K], how much of each level's statistics per pixel

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
        if self._norm_mode == "fused" and self._pixel_weights is None:
            # Training and plain stylizing: the per-image scale and shift ride in the fused kernel, one pass.
            scale, offset = self.affine(cond, tf.shape(x)[0])
            return tf.cast(fused_instance_norm(norm_input(x), x.shape[-1], scale, offset, self.epsilon), dtype)
        x = self.normalize(tf.cast(x, tf.float32), x.shape[-1])
        if self._pixel_weights is None:
            scale, offset = self.affine(cond, tf.shape(x)[0])
            return tf.cast(x * scale[:, None, None, :] + offset[:, None, None, :], dtype)
        # A strength map: each pixel mixes the styles' scales and shifts (cin), or takes the plane values (channels
        # and balance: the last `planes` weights, all of them or B's) by its own weights.
        pixel = resize_like(self._pixel_weights, x)  # [1, h, w, S]
        gamma, beta = tf.cast(self.gamma, tf.float32), tf.cast(self.beta, tf.float32)
        if self.num_styles:
            x = x * tf.einsum("bhws,sc->bhwc", pixel, gamma) + tf.einsum("bhws,sc->bhwc", pixel, beta)
        else:
            x = x * gamma[0] + beta[0]
        if self.planes:
            kernel = tf.cast(self.plane_kernel, tf.float32)
            x = x + tf.einsum("bhwp,pc->bhwc", pixel[..., pixel.shape[-1] - self.planes:], kernel)
        return tf.cast(x, dtype)

    def affine(self, cond, batch):
        """The scale and shift [B, C] (float32) each image gets after normalisation, from its style weights."""
        gamma, beta = tf.cast(self.gamma, tf.float32), tf.cast(self.beta, tf.float32)
        if self.num_styles:
            mix = tf.cast(cond, tf.float32)
            scale, offset = mix @ gamma, mix @ beta
        else:
            scale, offset = tf.tile(gamma, [batch, 1]), tf.tile(beta, [batch, 1])
        if self.planes:
            offset = offset + tf.cast(cond, tf.float32) @ tf.cast(self.plane_kernel, tf.float32)
        return scale, offset

    def normalize(self, x, channels):
        """(x - mean) / std per image and channel, with the statistics the current mode says."""
        if self._norm_mode == "fused":
            return fused_instance_norm(x, channels, epsilon=self.epsilon)
        if self._norm_mode == "fixed":
            mean, var = self._norm_stats
        elif self._norm_mode == "mixed":  # per pixel, a mix of several whole-image runs' statistics
            coeffs = resize_like(self._level_coeffs, x)
            mean = tf.einsum("bhwk,kc->bhwc", coeffs, self._norm_stats[0])
            var = tf.einsum("bhwk,kc->bhwc", coeffs, self._norm_stats[1])
        else:
            mean, var = tf.nn.moments(x, [1, 2], keepdims=True)
        if self._norm_mode == "smooth" and self._norm_stats is not None:  # frames of a video: an EMA of statistics
            m = self._momentum
            mean, var = m * self._norm_stats[0] + (1 - m) * mean, m * self._norm_stats[1] + (1 - m) * var
        if self._norm_mode in ("record", "smooth"):
            self._norm_stats = (mean, var)
        return (x - mean) * tf.math.rsqrt(var + self.epsilon)

    def get_config(self):
        return {**super().get_config(), "num_styles": self.num_styles, "planes": self.planes,
                "epsilon": self.epsilon}


class BlockedConv2D(layers.Conv2D):
    """A stride-1 'valid' convolution with an odd kernel, computed on the 2x2 space-to-depth view of its input: the
    same kernel rearranged (inside the graph, so its gradient flows to the same variable) into a (k+1)/2 kernel with
    4x the input and output channels, whose outputs depth-to-space back to the plain convolution's, equal up to
    float rounding. The network's last 9x9 convolution has 3 output channels, which leave a CPU's vector units idle
    (in the 512x512 forward's profile: 14% of the time at a fifth of the float32 peak); blocked it has 12, for 1.23x
    its multiply-adds. Measured on it at 512x512 (benchmarks/micro_ops.py): float32 forward 0.54x the time, forward
    and gradients 0.56x; bfloat16 forward 1.68x (slower: kept plain), forward and gradients 0.72x. So the blocked
    path runs in float32 and in training. Same variables as Conv2D (checkpoints unchanged). Inputs whose static
    height or width is odd take the plain path; the network's are always even (padded to a multiple of 4, then by
    the 9x9's 4 on each side), and an odd size known only at run time would fail in space_to_depth."""

    def call(self, x, training=None):
        k = self.kernel_size[0]
        odd = any(d is not None and d % 2 for d in x.shape[1:3])
        plain_shape = (self.strides != (1, 1) or self.padding != "valid" or k % 2 == 0 or self.kernel_size[1] != k
                       or self.dilation_rate != (1, 1) or self.groups != 1 or self.data_format != "channels_last")
        if odd or plain_shape or not (training or self.compute_dtype == "float32"):
            return super().call(x)
        kernel = self.blocked_kernel(self.kernel)
        y = tf.nn.conv2d(tf.nn.space_to_depth(x, 2), tf.cast(kernel, x.dtype), 1, "VALID")
        if self.use_bias:
            y = y + tf.cast(tf.tile(self.bias, [4]), y.dtype)
        y = tf.nn.depth_to_space(y, 2)
        return self.activation(y) if self.activation is not None else y

    @staticmethod
    def blocked_kernel(kernel):
        """[k, k, C, F] -> [(k+1)/2, (k+1)/2, 4C, 4F]: output phase (a, b) of the 2x2 block sees input position
        2j + s of the padded block grid through kernel tap 2j + s - (a, b); channel orders as tf.nn.space_to_depth
        and depth_to_space lay them out (row phase, column phase, channel)."""
        k, c, f = kernel.shape[0], kernel.shape[2], kernel.shape[3]
        half = (k + 1) // 2
        phases = []
        for a in (0, 1):
            for b in (0, 1):
                w = tf.pad(kernel, [[a, 1 - a], [b, 1 - b], [0, 0], [0, 0]])  # [k+1, k+1, C, F], tap m - (a, b)
                w = tf.reshape(w, [half, 2, half, 2, c, f])  # [j_h, s_h, j_w, s_w, C, F]
                phases.append(tf.reshape(tf.transpose(w, [0, 2, 1, 3, 4, 5]), [half, half, 4 * c, f]))
        return tf.reshape(tf.stack(phases, axis=-2), [half, half, 4 * c, 4 * f])  # output channels (a, b, F)


class ModulatedInstanceNorm(layers.Layer):
    """Instance norm whose per-image scale and shift are inputs: [x, scale, shift] -> the normalised x times scale plus
    shift (scale and shift [B, C], e.g. from a style code: the texture VAE's decoder, vae_model). No weights; float32
    statistics by `fused_instance_norm`, the scale and shift inside the fused kernel. At the demo decoder's shapes in
    bfloat16 (benchmarks/micro_ops.py) it takes 0.54-0.66x the time of keras's GroupNormalization followed by a
    multiply and an add forward, 0.45-0.65x with the gradients."""

    def __init__(self, epsilon=1e-5, **kw):
        super().__init__(**kw)
        self.epsilon = epsilon

    def call(self, inputs):
        x, scale, shift = inputs
        normed = fused_instance_norm(norm_input(x), x.shape[-1], tf.cast(scale, tf.float32),
                                     tf.cast(shift, tf.float32), self.epsilon)
        return tf.cast(normed, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


# Registered for Keras serialization: a saved model (model.save, keras.saving.load_model) finds them by name.
for _layer in (NearestUpsample, ReflectionPad, PadToMultiple, CropLike, StyleChannels, InstanceNorm,
               ModulatedInstanceNorm, BlockedConv2D):
    keras.saving.register_keras_serializable(package="stylizer")(_layer)


def instance_norms(net) -> list:
    return [layer for layer in net.layers if isinstance(layer, InstanceNorm)]


@contextlib.contextmanager
def _norm_mode(net, mode: str, stats=None):
    norms = instance_norms(net)
    for i, norm in enumerate(norms):
        norm._norm_mode, norm._norm_stats = mode, stats[i] if stats else None
    try:
        yield norms
    finally:
        for norm in norms:
            norm._norm_mode, norm._norm_stats = "fused", None


@contextlib.contextmanager
def recording_statistics(net):
    """Every instance norm of `net` records the (mean, variance) of its input; when the block ends, the list it
    yields holds them, one pair per norm layer in order (from the last call made inside the block)."""
    stats = []
    with _norm_mode(net, "record") as norms:
        yield stats
        stats.extend(norm._norm_stats for norm in norms)


@contextlib.contextmanager
def fixed_statistics(net, stats):
    """Every instance norm of `net` normalises with the given statistics (from `recording_statistics`) instead of
    its input's own: tiles of one image then all look like the whole image."""
    with _norm_mode(net, "fixed", stats):
        yield


@contextlib.contextmanager
def smoothed_statistics(net, momentum: float = 0.8):
    """Inside the block every instance norm of `net` normalises with an exponential moving average of the
    statistics of the inputs it has seen (weight `momentum` on the past): the frames of a video then share slowly
    moving statistics instead of each frame's own, so noise and lighting changes do not pump the whole picture."""
    with _norm_mode(net, "smooth") as norms:
        for norm in norms:
            norm._momentum = momentum
        yield


@contextlib.contextmanager
def per_pixel_weights(net, weight_map, level_stats=None, level_coeffs=None):
    """Inside the block `net` takes its style weights per pixel from `weight_map` [H, W, S] (the input image's
    size; each pixel's weights sum to 1) instead of its `weights` input: the style planes (`channels`, `balance`,
    at the input and after every norm) or the scales and shifts (`cin`) vary across the picture.

    Instance norm would still normalise with statistics of the whole, mixed picture, so one region's strength
    would shift another's look. With `level_stats` (one `recording_statistics` list per level: whole-image runs at
    uniform weights) and `level_coeffs` [H, W, K] (per pixel, how much of each level; see stylizer_apply.map_levels),
    every norm normalises each pixel with the mix of those statistics that its own weights call for: far from a
    boundary a region looks as the whole picture would at its weights."""
    def padded(values):  # [H, W, K] or [1, H, W, K], arrays or tensors, padded as PadToMultiple pads the image
        values = tf.convert_to_tensor(values, tf.float32)
        return PadToMultiple(4)(values if values.shape.rank == 4 else values[None])

    norms = instance_norms(net)
    planes = [layer for layer in net.layers if isinstance(layer, StyleChannels)]
    coeffs = None if level_coeffs is None else padded(level_coeffs)
    weight_map = padded(weight_map)
    for layer in norms + planes:
        layer._pixel_weights = weight_map
    if level_stats is not None:
        for i, norm in enumerate(norms):
            means = tf.concat([tf.reshape(stats[i][0], [1, -1]) for stats in level_stats], 0)
            variances = tf.concat([tf.reshape(stats[i][1], [1, -1]) for stats in level_stats], 0)
            norm._norm_mode, norm._norm_stats, norm._level_coeffs = "mixed", (means, variances), coeffs
    try:
        yield
    finally:
        for layer in norms + planes:
            layer._pixel_weights = None
        for norm in norms:
            norm._norm_mode, norm._norm_stats, norm._level_coeffs = "fused", None, None


@contextlib.contextmanager
def unfused_norms(net):
    """Instance norm by tf.nn.moments instead of fused batch norm, which TFLite lacks (traced for export)."""
    with _norm_mode(net, "moments"):
        yield


# --------------------------------------------------------------------------------------------------------------------
# The network

def build_stylizer(num_styles: int, conditioning: str = "channels", name: str = "stylizer"):
    """The Johnson et al. transformation network as a named keras.Model taking {"image": [B,H,W,3] in [0,1],
    "weights": [B, num_styles]} and returning [B,H,W,3] in [0,1], for any H and W. `conditioning`: channels,
    balance, cin or none (see stylizer.py). (An output that adds a learned change to the photo itself, so that an
    untrained net returns the photo, kept the content at a CPU budget but learnt half as much style: measured and
    not adopted, docs/results-quality.md.)"""
    if conditioning == "balance" and num_styles != 2:
        raise ValueError(f"balance conditioning needs exactly 2 styles, got {num_styles}")
    image = keras.Input((None, None, 3), name="image")
    weights = keras.Input((num_styles,), name="weights")
    counter = iter(range(1000))
    # The values of the constant style planes: one per style (`channels`) or the weight of style B (`balance`).
    if conditioning == "channels":
        plane_values = weights
    elif conditioning == "balance":
        plane_values = layers.Lambda(lambda w: w[:, 1:2], name="balance")(weights)
    elif conditioning in ("cin", "none"):
        plane_values = None
    else:
        raise ValueError(f"unknown conditioning '{conditioning}': use channels, balance, cin or none")

    def norm(x):
        name = f"in{next(counter)}"
        if conditioning == "cin":
            return InstanceNorm(num_styles=num_styles, name=name)([x, weights])
        if plane_values is not None:
            # A constant plane entering a conv only adds a per-channel constant to its output, and the instance
            # norm right after subtracts it: fed at the input alone, the style planes are erased by the first norm
            # (we measured identical outputs at every strength). So the planes also enter after every norm.
            return InstanceNorm(planes=plane_values.shape[-1], name=name)([x, plane_values])
        return InstanceNorm(name=name)(x)

    def conv(x, filters, kernel, stride=1, relu=True):
        x = ReflectionPad(kernel // 2)(x)
        x = layers.Conv2D(filters, kernel, strides=stride, padding="valid")(x)
        x = norm(x)
        return layers.ReLU()(x) if relu else x

    x = PadToMultiple(4)(image)
    if plane_values is not None:
        x = StyleChannels(conditioning)([x, weights])  # RGB plus the style planes, the original design
    x = conv(x, 32, 9)
    x = conv(x, 64, 3, stride=2)
    x = conv(x, 128, 3, stride=2)
    for _ in range(5):
        x = layers.Add()([x, conv(conv(x, 128, 3), 128, 3, relu=False)])
    for filters in (64, 32):
        # Nearest upsampling + conv instead of transposed conv: no checkerboard artefacts (Odena et al. 2016).
        x = NearestUpsample()(x)
        x = conv(x, filters, 3)
    x = ReflectionPad(4)(x)
    x = BlockedConv2D(3, 9, padding="valid")(x)
    x = layers.Activation("sigmoid", dtype="float32")(x)
    x = CropLike()([x, image])
    return keras.Model({"image": image, "weights": weights}, x, name=name)


# The smallest image side the network takes: its reflection pads (4 px for the 9x9 convolutions) must be shorter than
# the padded input, and the two stride-2 stages must leave a map at least 2 px wide.
MIN_SIDE = 8


def size_problem(height: int, width: int) -> str | None:
    """Why the network cannot take an image of this size (None when it can)."""
    if min(height, width) < MIN_SIDE:
        return f"{width}x{height} is too small: the stylizer needs at least {MIN_SIDE}x{MIN_SIDE} pixels"
    return None


def strength_weights(num_styles: int, strengths) -> np.ndarray:
    """The one translation of strengths into the network's style weights: [len(strengths), num_styles] with 1 - s on
    the first style and s on the last (strength 0 is the first style, 1 the last), computed in the strengths' own
    precision. A single-style net has one weight vector whatever the strengths: [[1]]."""
    if num_styles == 1:
        return np.ones((1, 1), np.float32)
    s = np.asarray(strengths)
    w = np.zeros((len(s), num_styles), np.float32)
    w[:, 0] = 1.0 - s
    w[:, -1] = s
    return w
