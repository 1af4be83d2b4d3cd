"""The op-level choices of issue 16, each timed against the op it replaced in the same run (forward, and forward +
backward), at the shapes the networks use:

    python benchmarks/micro_ops.py [--repeats 10]

  Gram matrix: one batched matmul of [B, H*W, C] (perceptual.gram_matrix) vs the einsum it replaced;
  reflection padding: mirrored slices concatenated (stylizer_net.ReflectionPad outside training) vs MirrorPad.
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


def forward_and_backward(op, x, repeats: int) -> tuple[float, float]:
    import tensorflow as tf

    forward = tf.function(lambda: tf.reduce_sum(op(x)))

    @tf.function
    def both():
        with tf.GradientTape() as tape:
            y = op(x)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, x)
    return median_time(lambda: forward().numpy(), repeats), median_time(lambda: both().numpy(), repeats)


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
        old, new = (forward_and_backward(op, x, args.repeats) for op in (einsum_gram, gram_matrix))
        key = "gram_" + "x".join(map(str, shape))
        result[key] = {"forward": new[0] / old[0], "forward_backward": new[1] / old[1]}
        print(f"Gram {shape}: matmul {new[0] * 1000:.1f} / {new[1] * 1000:.1f} ms (forward / +backward), einsum "
              f"{old[0] * 1000:.1f} / {old[1] * 1000:.1f} ms -> {old[0] / new[0]:.2f}x / {old[1] / new[1]:.2f}x "
              "faster", flush=True)
    for shape, pad in PAD_SHAPES:
        x = tf.Variable(tf.random.uniform(shape))
        layer = ReflectionPad(pad)
        mirror = forward_and_backward(lambda v: layer(v, training=True), x, args.repeats)
        slices = forward_and_backward(lambda v: layer(v, training=False), x, args.repeats)
        key = f"pad{pad}_" + "x".join(map(str, shape))
        result[key] = {"forward": slices[0] / mirror[0], "forward_backward": slices[1] / mirror[1]}
        print(f"reflection pad {pad} of {shape}: slices {slices[0] * 1000:.1f} / {slices[1] * 1000:.1f} ms, MirrorPad "
              f"{mirror[0] * 1000:.1f} / {mirror[1] * 1000:.1f} ms -> slices/MirrorPad {slices[0] / mirror[0]:.2f}x "
              f"forward, {slices[1] / mirror[1]:.2f}x with the gradient", flush=True)
    print(json.dumps({k: {m: round(v, 3) for m, v in r.items()} for k, r in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
