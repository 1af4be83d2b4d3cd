"""Side-by-side speed: every figure is a ratio against a reference measured in the same run, on the same machine
(warm-up excluded, median of repeats).

    make bench                                        # installs benchmarks/requirements.txt (PyTorch, CPU)
    python benchmarks/speed.py [--sizes 224,512,1024] [--out out.json] [--huge 4096]

Figures:
  forward pass of our stylizer (float32 and mixed_bfloat16) vs the same network in PyTorch, per size;
  one training step (batch 4 at 256, VGG16 losses) ours vs PyTorch;
  multi-style training step (channels and cin, 2 styles) vs single-style;
  feed-forward stylize vs Gatys optimisation (500 iterations, extrapolated from measured iterations) at 512;
  peak memory of a tiled (512 px) stylize of a --huge x --huge image (0 skips it).
The last line is a JSON object with every ratio.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import image_utilities as iu  # noqa: E402
import stylizer as S  # noqa: E402


def median_time(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ours_forward(size: int, precision: str, repeats: int) -> float:
    import tensorflow as tf

    from run_dir import dtype_policy
    from stylizer_net import build_stylizer

    with dtype_policy(precision):
        net = build_stylizer(2, "channels")
    fwd = tf.function(lambda x, w: net({"image": x, "weights": w}, training=False))
    x = tf.random.uniform((1, size, size, 3))
    w = tf.constant([[0.5, 0.5]])
    return median_time(lambda: fwd(x, w).numpy(), repeats)


def torch_forward(size: int, repeats: int) -> float:
    import torch
    from torch_johnson import JohnsonNet

    net = JohnsonNet(2, "channels").eval()
    x, w = torch.rand(1, 3, size, size), torch.tensor([[0.5, 0.5]])

    def run():
        with torch.inference_mode():
            net(x, w)
    return median_time(run, repeats)


def ours_train_step(conditioning: str, num_styles: int, batch: int, size: int, repeats: int) -> float:
    import keras
    import tensorflow as tf

    from perceptual import vgg_features
    from run_dir import make_strategy
    from stylizer_data import STYLE_LAYERS
    from stylizer_net import build_stylizer

    layers = list(STYLE_LAYERS)
    config = S.StylizerConfig(conditioning=conditioning, size=size, batch_size=batch)
    vgg = vgg_features(layers, name="bench_vgg")
    content_vgg = vgg_features(["relu2_2"], name="bench_content_vgg")
    net = build_stylizer(num_styles, conditioning)
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(net.trainable_variables)
    step = S.make_train_step(net, vgg, content_vgg, optimizer, config, layers, make_strategy("default"))
    rng = np.random.default_rng(0)
    content = tf.constant(rng.random((batch, size, size, 3), np.float32))
    weights = tf.constant(np.full((batch, num_styles), 1.0 / num_styles, np.float32))
    channels = {"relu1_2": 64, "relu2_2": 128, "relu3_3": 256, "relu4_3": 512}
    grams = {n: tf.constant(rng.random((batch, c, c), np.float32) * 0.01) for n, c in channels.items()}
    return median_time(lambda: {k: float(v) for k, v in step(content, weights, grams).items()}, repeats)


def torch_train_step(batch: int, size: int, repeats: int) -> float:
    import torch
    from torch_johnson import JohnsonNet, VGGFeatures, make_train_step

    from perceptual import load_weights

    net = JohnsonNet(2, "channels")
    vgg = VGGFeatures(load_weights())
    channels = {"relu1_2": 64, "relu2_2": 128, "relu3_3": 256, "relu4_3": 512}
    grams = {n: torch.rand(batch, c, c) * 0.01 for n, c in channels.items()}
    step = make_train_step(net, vgg, grams)
    content, w = torch.rand(batch, 3, size, size), torch.full((batch, 2), 0.5)
    return median_time(lambda: step(content, w), repeats)


def optimize_iteration(size: int) -> float:
    """Seconds per Gatys iteration at `size`, from the difference of two runs (removes set-up and tracing)."""
    import builtin_images
    from stylizer_eval import optimize_image

    content = iu.resize(builtin_images.default_content(size)["scene_0"], size, size)
    style = builtin_images.default_styles(size)["night_swirls"]
    times = {}
    for iters in (2, 8):
        t0 = time.perf_counter()
        optimize_image(content, [style], [1.0], iters, 1.0, 10.0, 10.0, log_every=10 ** 9)
        times[iters] = time.perf_counter() - t0
    return (times[8] - times[2]) / 6


HUGE = r"""
import resource, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from stylizer_apply import tiled_stylize
from stylizer_net import build_stylizer
size = int(sys.argv[2])
net = build_stylizer(2, "channels")
y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
image = np.stack([x, y, 0.5 + 0.5 * np.sin(40 * x * y)], -1).astype(np.float32)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
out = tiled_stylize(net, image, [0.5, 0.5], tile=512)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{base:.0f} {peak:.0f} {seconds:.1f} {out.shape[0]}x{out.shape[1]}")
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=iu.HelpFormatter)
    ap.add_argument("--sizes", default="224,512,1024", help="image sides of the forward-pass comparison")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats of each figure (the median counts)")
    ap.add_argument("--train-size", type=int, default=256, help="image side of the training-step comparison")
    ap.add_argument("--train-batch", type=int, default=4, help="batch of the training-step comparison")
    ap.add_argument("--huge", type=int, default=4096, help="side of the tiled-stylize memory test; 0 skips it")
    ap.add_argument("--out", type=Path, help="write the ratios here as JSON (default: print them only)")
    args = ap.parse_args(argv)
    import tensorflow as tf
    import torch

    print(f"TensorFlow {tf.__version__} ({tf.config.threading.get_intra_op_parallelism_threads() or 'all'} "
          f"threads), PyTorch {torch.__version__} ({torch.get_num_threads()} threads)", flush=True)
    result = {}
    for size in [int(s) for s in args.sizes.split(",")]:
        ours = ours_forward(size, "float32", args.repeats)
        ours_bf16 = ours_forward(size, "mixed_bfloat16", args.repeats)
        theirs = torch_forward(size, args.repeats)
        result[f"infer_{size}_vs_torch"] = ours / theirs
        result[f"infer_{size}_bf16_vs_torch"] = ours_bf16 / theirs
        print(f"forward {size}x{size}: ours {ours * 1000:.0f} ms, ours bf16 {ours_bf16 * 1000:.0f} ms, "
              f"PyTorch {theirs * 1000:.0f} ms -> ours/PyTorch {ours / theirs:.2f}x (bf16 {ours_bf16 / theirs:.2f}x)",
              flush=True)
    b, sz = args.train_batch, args.train_size
    single = ours_train_step("none", 1, b, sz, args.repeats)
    channels = ours_train_step("channels", 2, b, sz, args.repeats)
    cin = ours_train_step("cin", 2, b, sz, args.repeats)
    theirs = torch_train_step(b, sz, args.repeats)
    result["train_vs_torch"] = channels / theirs
    result["multi_channels_vs_single"] = channels / single
    result["multi_cin_vs_single"] = cin / single
    result["multi_vs_single"] = max(channels, cin) / single
    print(f"train step (batch {b} at {sz}, VGG16 losses): ours {channels * 1000:.0f} ms, PyTorch {theirs * 1000:.0f} ms"
          f" -> {channels / theirs:.2f}x", flush=True)
    print(f"multi-style vs single-style step: channels {channels / single:.3f}x, cin {cin / single:.3f}x "
          f"(single {single * 1000:.0f} ms)", flush=True)
    forward_512 = ours_forward(512, "float32", args.repeats)
    per_iter = optimize_iteration(512)
    result["vs_optimize_512"] = per_iter * 500 / forward_512
    print(f"512x512: feed-forward {forward_512 * 1000:.0f} ms vs Gatys 500 iterations ~{per_iter * 500:.0f} s "
          f"({per_iter * 1000:.0f} ms/iter measured) -> {per_iter * 500 / forward_512:.0f}x faster", flush=True)
    if args.huge:
        proc = subprocess.run([sys.executable, "-c", HUGE, str(ROOT), str(args.huge)], capture_output=True,
                              text=True)
        if proc.returncode == 0:
            base, peak, seconds, shape = proc.stdout.split()[-4:]
            result[f"peak_memory_{args.huge}_mib"] = float(peak)
            print(f"tiled stylize {shape} (tile 512): peak RSS {peak} MiB ({base} MiB before), {seconds} s")
        else:
            print(f"tiled stylize {args.huge}: failed: {proc.stderr.strip().splitlines()[-1:]}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: round(v, 4) for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
