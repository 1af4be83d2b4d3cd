"""The op-level choices of the speed work, each timed against the op it replaced in the same run (forward, and forward +
backward), at the shapes the networks use:

    python benchmarks/micro_ops.py [--repeats 10]

  Gram matrix: one batched matmul of [B, H*W, C] (perceptual.gram_matrix) vs the einsum it replaced;
  reflection padding: mirrored slices concatenated (stylizer_net.ReflectionPad outside training) vs MirrorPad;
  the stylizer's last 9x9 convolution (32 -> 3 channels at 512x512, float32 and bfloat16) on the space-to-depth view
  (stylizer_net.BlockedConv2D) vs keras's Conv2D, forward and with the input's and kernel's gradients;
  the texture decoder's conditional instance norm (stylizer_net.ModulatedInstanceNorm) vs keras's GroupNormalization
  then a multiply and an add, at the demo decoder's shapes (batch 24, bfloat16 in, float32 statistics);
  bfloat16 instance norms fed bfloat16 (stylizer_net.NATIVE_BFLOAT16_NORM) vs cast to float32 and back: the
  stylizer's forward at 512 and its training step (batch 4 at 256) in mixed_bfloat16, whole.
The last line is JSON: for each op and shape, new / old time, forward and forward + backward.
"""
import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import image_utilities as iu  # noqa: E402
from speed import median_time  # noqa: E402

GRAM_SHAPES = [(24, 64, 64, 64), (24, 32, 32, 128), (24, 16, 16, 256), (4, 256, 256, 64), (4, 32, 32, 512)]
PAD_SHAPES = [((1, 512, 512, 32), 4), ((1, 128, 128, 128), 1), ((4, 256, 256, 32), 4), ((4, 64, 64, 128), 1)]
NORM_SHAPES = [(24, 8, 8, 128), (24, 16, 16, 64), (24, 32, 32, 32), (24, 64, 64, 32)]


def with_gradients(op, inputs: list, repeats: int, variables=()) -> tuple[float, float]:
    """Median seconds of op(*inputs) forward, and forward + the gradients of every input and of `variables` (the
    op's weights), of the sum of squares of its output."""
    import tensorflow as tf

    forward = tf.function(lambda: tf.reduce_sum(tf.cast(op(*inputs), tf.float32)))

    @tf.function
    def both():
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            y = tf.cast(op(*inputs), tf.float32)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [*inputs, *variables])
    return median_time(lambda: forward().numpy(), repeats), median_time(lambda: [g.numpy() for g in both()], repeats)


def blocked_conv(repeats: int, result: dict):
    import keras
    import tensorflow as tf

    from stylizer_net import BlockedConv2D

    for dtype in ("float32", "bfloat16"):
        layer = BlockedConv2D(3, 9, padding="valid", dtype=dtype)
        x = tf.cast(tf.random.uniform((1, 520, 520, 32)), dtype)
        layer.build(x.shape)
        plain = with_gradients(lambda v: keras.layers.Conv2D.call(layer, v), [x], repeats, [layer.kernel])
        blocked = with_gradients(lambda v: BlockedConv2D.call(layer, v, training=True), [x], repeats, [layer.kernel])
        result[f"last_conv_{dtype}"] = {"forward": blocked[0] / plain[0], "forward_backward": blocked[1] / plain[1]}
        print(f"last 9x9 conv 32->3 at 512, {dtype}: blocked {blocked[0] * 1000:.1f} / {blocked[1] * 1000:.1f} ms "
              f"(forward / +gradients), Conv2D {plain[0] * 1000:.1f} / {plain[1] * 1000:.1f} ms -> blocked/Conv2D "
              f"{blocked[0] / plain[0]:.2f}x forward, {blocked[1] / plain[1]:.2f}x with the gradients", flush=True)


def modulated_norm(repeats: int, result: dict):
    import keras
    import tensorflow as tf

    from stylizer_net import ModulatedInstanceNorm

    fused = ModulatedInstanceNorm(dtype="mixed_bfloat16")  # as in the demo's decoder: bfloat16 in and out
    for shape in NORM_SHAPES:
        x = tf.cast(tf.random.normal(shape), tf.bfloat16)
        scale, shift = tf.random.normal(shape[:1] + shape[3:]) + 1.0, tf.random.normal(shape[:1] + shape[3:])
        group = keras.layers.GroupNormalization(groups=-1, center=False, scale=False, epsilon=1e-5,
                                                dtype="mixed_bfloat16")

        def keras_path(v, s, b):
            y = group(v)
            return y * tf.cast(s[:, None, None, :], y.dtype) + tf.cast(b[:, None, None, :], y.dtype)
        old = with_gradients(keras_path, [x, scale, shift], repeats)
        new = with_gradients(lambda v, s, b: fused([v, s, b]), [x, scale, shift], repeats)
        key = "modulated_norm_" + "x".join(map(str, shape))
        result[key] = {"forward": new[0] / old[0], "forward_backward": new[1] / old[1]}
        print(f"modulated instance norm {shape}: fused {new[0] * 1000:.1f} / {new[1] * 1000:.1f} ms, "
              f"GroupNormalization + scale + shift {old[0] * 1000:.1f} / {old[1] * 1000:.1f} ms -> fused/keras "
              f"{new[0] / old[0]:.2f}x forward, {new[1] / old[1]:.2f}x with the gradients", flush=True)


def bfloat16_norms(repeats: int, result: dict):
    import stylizer_net
    from speed import forward_runner, train_step_runner
    from vae_cost import seconds_per_step

    runs = {}
    for native in (False, True):  # the flag is read when a function is traced: trace each under its setting
        stylizer_net.NATIVE_BFLOAT16_NORM = native
        try:
            for name, make in (("forward_512", lambda: forward_runner(512, "mixed_bfloat16")),
                               ("train_step", lambda: train_step_runner("channels", 2, 4, 256,
                                                                        precision="mixed_bfloat16"))):
                runs[name, native] = make()
                runs[name, native]()
        finally:
            stylizer_net.NATIVE_BFLOAT16_NORM = True
    # alternating one-run blocks, so both see the same machine load
    seconds = seconds_per_step({key: lambda n, run=run: run() for key, run in runs.items()}, repeats, 1)
    for name in ("forward_512", "train_step"):
        cast, native = seconds[name, False], seconds[name, True]
        result[f"bfloat16_norm_{name}"] = {"whole": native / cast}
        print(f"mixed_bfloat16 {name}: norms fed bfloat16 {native * 1000:.0f} ms, cast to float32 and back "
              f"{cast * 1000:.0f} ms -> {native / cast:.2f}x", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=iu.HelpFormatter)
    ap.add_argument("--repeats", type=int, default=10, help="timed repeats of each figure (the median counts)")
    args = ap.parse_args(argv)
    import tensorflow as tf

    from perceptual import gram_matrix
    from reference_steps import einsum_gram
    from stylizer_net import ReflectionPad

    result = {}
    for shape in GRAM_SHAPES:
        x = tf.Variable(tf.random.uniform(shape))
        old, new = (with_gradients(op, [x], args.repeats) for op in (einsum_gram, gram_matrix))
        key = "gram_" + "x".join(map(str, shape))
        result[key] = {"forward": new[0] / old[0], "forward_backward": new[1] / old[1]}
        print(f"Gram {shape}: matmul {new[0] * 1000:.1f} / {new[1] * 1000:.1f} ms (forward / +backward), einsum "
              f"{old[0] * 1000:.1f} / {old[1] * 1000:.1f} ms -> {old[0] / new[0]:.2f}x / {old[1] / new[1]:.2f}x "
              "faster", flush=True)
    for shape, pad in PAD_SHAPES:
        x = tf.Variable(tf.random.uniform(shape))
        layer = ReflectionPad(pad)
        mirror = with_gradients(lambda v: layer(v, training=True), [x], args.repeats)
        slices = with_gradients(lambda v: layer(v, training=False), [x], args.repeats)
        key = f"pad{pad}_" + "x".join(map(str, shape))
        result[key] = {"forward": slices[0] / mirror[0], "forward_backward": slices[1] / mirror[1]}
        print(f"reflection pad {pad} of {shape}: slices {slices[0] * 1000:.1f} / {slices[1] * 1000:.1f} ms, MirrorPad "
              f"{mirror[0] * 1000:.1f} / {mirror[1] * 1000:.1f} ms -> slices/MirrorPad {slices[0] / mirror[0]:.2f}x "
              f"forward, {slices[1] / mirror[1]:.2f}x with the gradient", flush=True)
    blocked_conv(args.repeats, result)
    modulated_norm(args.repeats, result)
    bfloat16_norms(max(3, args.repeats // 2), result)
    print(json.dumps({k: {m: round(v, 3) for m, v in r.items()} for k, r in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
