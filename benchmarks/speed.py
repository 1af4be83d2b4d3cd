"""Side-by-side speed: every figure is a ratio against a reference measured in the same run, on the same machine
(warm-up excluded, median of repeats), and a fraction of the machine's own dense-matmul peak measured in that run.

    make bench                                        # installs benchmarks/requirements.txt (PyTorch, CPU)
    python benchmarks/speed.py [--sizes 224,512,1024] [--out out.json] [--huge 4096] [--xla]

Figures:
  the machine's peak: the best GFLOP/s of square float32 and bfloat16 matmuls through TensorFlow;
  forward pass of our stylizer (float32 and mixed_bfloat16) vs the same network in PyTorch, per size;
  one training step (batch 4 at 256, VGG16 losses) ours (float32 and mixed_bfloat16) vs PyTorch (float32);
  multi-style training step (channels and cin, 2 styles) vs single-style;
  the VAE training step of SEED_DECODER_VAE (the continuum terms with the seed decoder, the configuration the speed
  work of 2026-11-30 was measured on) vs the step before that work (benchmarks/reference_steps.py), in alternating
  blocks;
  feed-forward stylize vs Gatys optimisation (500 iterations, extrapolated from measured iterations) at 512;
  peak memory of a tiled (512 px) stylize of a --huge x --huge image (0 skips it).
Each time is also given as achieved GFLOP/s and as a fraction of the peak of its precision, from FLOPs counted
from the layer shapes (2 x multiply-adds of every convolution, dense layer and Gram; a training step counts the
backward pass as twice the forward of what it trains through, once for what it only differentiates through).
With --xla the forward and training step are also timed compiled by XLA (jit_compile). The last line is a JSON
object with every ratio.
"""
import argparse
import dataclasses
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
import stylizer_run as R  # noqa: E402
from vae_cost import CONTINUUM  # noqa: E402


def median_time(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def gemm_peak(dtype: str, repeats: int) -> float:
    """GFLOP/s of the fastest square matmul (n = 1024, 2048, 4096) in `dtype` through TensorFlow: the dense
    throughput this machine gives TensorFlow, the yardstick of the fractions of peak."""
    import tensorflow as tf

    best = 0.0
    for n in (1024, 2048, 4096):
        a = tf.cast(tf.random.uniform((n, n)), dtype)
        b = tf.cast(tf.random.uniform((n, n)), dtype)
        product = tf.function(lambda a, b: tf.reduce_sum(tf.cast(tf.matmul(a, b), tf.float32)))
        seconds = median_time(lambda: product(a, b).numpy(), repeats, warmup=1)
        best = max(best, 2.0 * n ** 3 / seconds / 1e9)
    return best


def counted_flops(model, inputs) -> float:
    """2 x the multiply-adds of every Conv2D and Dense layer of one call of the (flat, functional) `model` on
    `inputs`: output elements x the kernel's size per output channel, with the output shapes of a real call."""
    import keras

    layers = [layer for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]
    outputs = keras.Model(model.input, [layer.output for layer in layers])(inputs)
    return sum(2.0 * np.prod(out.shape) * np.prod(layer.kernel.shape[:-1]) for layer, out in zip(layers, outputs))


def gram_flops(features) -> float:
    """FLOPs of the Grams of a dict of [B, H, W, C] feature maps (2 x B x H*W x C^2 each)."""
    return sum(2.0 * f.shape[0] * f.shape[1] * f.shape[2] * f.shape[3] ** 2 for f in features.values())


def stylizer_forward_flops(size: int) -> float:
    import tensorflow as tf

    from stylizer_net import build_stylizer

    net = build_stylizer(2, "channels")
    return counted_flops(net, {"image": tf.zeros((1, size, size, 3)), "weights": tf.constant([[0.5, 0.5]])})


def train_step_flops(batch: int, size: int) -> float:
    """One stylizer step: the net forward + backward (3x its forward), VGG16 to relu4_3 on its output forward +
    input gradients (2x), VGG16 to the content layer (the default, relu3_3) on the content (1x), the style Grams
    forward + backward (3x)."""
    import tensorflow as tf

    from perceptual import vgg_features
    from stylizer_data import STYLE_LAYERS

    x = tf.zeros((batch, size, size, 3))
    loss_vgg = vgg_features(list(STYLE_LAYERS), name="flops_vgg")
    content_vgg = vgg_features([R.StylizerConfig().content_layer], name="flops_content_vgg")
    return (3 * batch * stylizer_forward_flops(size) + 2 * counted_flops(loss_vgg, x)
            + counted_flops(content_vgg, x) + 3 * gram_flops(loss_vgg(x)))


def vae_step_flops(config) -> float:
    """One VAE step of `config` (continuum): encoder forward + backward on the crops (3x), decoder forward +
    backward on the crops and the path's midpoints (3x), VGG16 on the decodes with input gradients (2x) and on the
    crops (1x), Grams of the decodes (3x) and of the crops (1x)."""
    import tensorflow as tf

    import vae_keras as V
    from perceptual import vgg_features

    vae = V.VAE(config)
    b, p = config.batch_size, config.batch_size // 2 if config.path_weight else 0
    crops = tf.zeros((1, config.size, config.size, 3))
    z = [tf.zeros((1, config.latent_dim)), tf.zeros((1, config.size, config.size, config.noise_channels))]
    vgg = vgg_features(config.vgg_layers(), name="flops_vae_vgg")
    per_vgg, per_gram = counted_flops(vgg, crops), gram_flops(vgg(crops))
    return (3 * b * counted_flops(vae.encoder, crops) + 3 * (b + p) * counted_flops(vae.decoder, z)
            + (2 * (b + p) + b) * per_vgg + (3 * (b + p) + b) * per_gram)


def speed(seconds: float, flops: float, peak: float) -> str:
    return f"{flops / seconds / 1e9:.0f} GFLOP/s, {flops / seconds / 1e9 / peak:.0%} of peak"


def ours_forward(size: int, precision: str, repeats: int, xla: bool = False) -> float:
    return median_time(forward_runner(size, precision, xla), repeats)


def forward_runner(size: int, precision: str = "float32", xla: bool = False):
    """A function running one compiled forward pass of a fresh 2-style net (built under `precision`) on a fixed
    size x size image."""
    import tensorflow as tf

    from distribute import dtype_policy
    from stylizer_net import build_stylizer

    with dtype_policy(precision):
        net = build_stylizer(2, "channels")
    fwd = tf.function(lambda x, w: net({"image": x, "weights": w}, training=False), jit_compile=xla)
    x = tf.random.uniform((1, size, size, 3))
    w = tf.constant([[0.5, 0.5]])
    return lambda: fwd(x, w).numpy()


def torch_forward(size: int, repeats: int) -> float:
    import torch
    from torch_johnson import JohnsonNet

    net = JohnsonNet(2, "channels").eval()
    x, w = torch.rand(1, 3, size, size), torch.tensor([[0.5, 0.5]])

    def run():
        with torch.inference_mode():
            net(x, w)
    return median_time(run, repeats)


def ours_train_step(conditioning: str, num_styles: int, batch: int, size: int, repeats: int,
                    make_step=S.make_train_step, precision: str = "float32") -> float:
    return median_time(train_step_runner(conditioning, num_styles, batch, size, make_step, precision), repeats)


def train_step_runner(conditioning: str, num_styles: int, batch: int, size: int, make_step=S.make_train_step,
                      precision: str = "float32"):
    """A function running one compiled stylizer step (fresh weights, built under `precision`) on a fixed batch."""
    import tensorflow as tf

    run = stylizer_step(conditioning, num_styles, batch, size, make_step, precision)
    content = tf.constant(np.random.default_rng(1).random((batch, size, size, 3), np.float32))
    return lambda: run(content)


def stylizer_step(conditioning: str, num_styles: int, batch: int, size: int, make_step=S.make_train_step,
                  precision: str = "float32"):
    """One compiled stylizer step (fresh weights, built under `precision`) as a function of a content batch, with
    fixed style weights and Gram targets: content -> {loss, content, style, tv} as floats."""
    import keras
    import tensorflow as tf

    from perceptual import vgg_features
    from distribute import dtype_policy, make_strategy
    from stylizer_data import STYLE_LAYERS
    from stylizer_net import build_stylizer

    layers = list(STYLE_LAYERS)
    config = R.StylizerConfig(conditioning=conditioning, size=size, batch_size=batch, precision=precision)
    keras.utils.set_random_seed(0)
    with dtype_policy(precision):
        vgg = vgg_features(layers, name="bench_vgg")
        content_vgg = vgg_features([config.content_layer], name="bench_content_vgg")
        net = build_stylizer(num_styles, conditioning)
    optimizer = keras.optimizers.Adam(1e-3)
    if precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(net.trainable_variables)
    step = make_step(net, vgg, content_vgg, optimizer, config, layers, make_strategy("default"))
    rng = np.random.default_rng(0)
    weights = tf.constant(np.full((batch, num_styles), 1.0 / num_styles, np.float32))
    channels = {"relu1_2": 64, "relu2_2": 128, "relu3_3": 256, "relu4_3": 512}
    grams = {n: tf.constant(rng.random((batch, c, c), np.float32) * 0.01) for n, c in channels.items()}
    return lambda content: {k: float(v) for k, v in step(content, weights, grams).items()}


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


def vae_steps(repeats: int) -> dict:
    """Seconds per VAE step of SEED_DECODER_VAE: the reference step (float32, before the speed work), today's step in
    float32, and today's step in mixed_bfloat16 (as make demo runs), timed in alternating blocks."""
    from reference_steps import vae_step
    from vae_cost import build, builtin_config, seconds_per_step

    config, styles = builtin_config(**SEED_DECODER_VAE)
    bf16 = dataclasses.replace(config, precision="mixed_bfloat16")
    variants = {"reference": build(config, styles, vae_step), "float32": build(config, styles),
                "mixed_bfloat16": build(bf16, styles)}
    return seconds_per_step(variants, repeats, 3) | {"flops": vae_step_flops(config)}


# The continuum VAE with the seed decoder and its layout term: the configuration the target "the VAE step halved" of the
# speed work is measured on (vae_step_vs_baseline). Each caller sets its training precision.
SEED_DECODER_VAE = dict(size=64, style_size=128, latent_dim=32, batch_size=16, lr=1e-3, beta=0.02, recon="gram",
                        decoder="seed", feature_weight=0.1, lr_schedule="constant", **CONTINUUM)
# The VAE `make demo` trains (the recommended route): the texture decoder without a feature term (profile_steps.py).
DEMO_VAE = dict(SEED_DECODER_VAE, decoder="texture", feature_weight=0.0, lr_schedule="cosine")


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


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=iu.HelpFormatter)
    ap.add_argument("--sizes", default="224,512,1024", help="image sides of the forward-pass comparison")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats of each figure (the median counts)")
    ap.add_argument("--train-size", type=int, default=256, help="image side of the training-step comparison")
    ap.add_argument("--train-batch", type=int, default=4, help="batch of the training-step comparison")
    ap.add_argument("--huge", type=int, default=4096, help="side of the tiled-stylize memory test; 0 skips it")
    ap.add_argument("--out", type=Path, help="write the ratios here as JSON (default: print them only)")
    ap.add_argument("--xla", action="store_true", help="also time the forward and training step compiled by XLA")
    return ap


def forward_figures(args, peak: dict, result: dict):
    """Our forward pass (float32 and bfloat16) against PyTorch's at each --sizes."""
    for size in [int(s) for s in args.sizes.split(",")]:
        flops = stylizer_forward_flops(size)
        ours = ours_forward(size, "float32", args.repeats)
        ours_bf16 = ours_forward(size, "mixed_bfloat16", args.repeats)
        theirs = torch_forward(size, args.repeats)
        result[f"infer_{size}_vs_torch"] = ours / theirs
        result[f"infer_{size}_bf16_vs_torch"] = ours_bf16 / theirs
        result[f"forward_{size}_fraction_of_peak"] = flops / ours / 1e9 / peak["float32"]
        result[f"forward_{size}_bf16_fraction_of_peak"] = flops / ours_bf16 / 1e9 / peak["mixed_bfloat16"]
        print(f"forward {size}x{size} ({flops / 1e9:.1f} GFLOP): ours {ours * 1000:.0f} ms "
              f"({speed(ours, flops, peak['float32'])}), ours bf16 {ours_bf16 * 1000:.0f} ms "
              f"({speed(ours_bf16, flops, peak['mixed_bfloat16'])}), PyTorch {theirs * 1000:.0f} ms "
              f"({flops / theirs / 1e9:.0f} GFLOP/s) -> ours/PyTorch {ours / theirs:.2f}x "
              f"(bf16 {ours_bf16 / theirs:.2f}x)", flush=True)
        if args.xla:
            xla = ours_forward(size, "float32", args.repeats, xla=True)
            result[f"infer_{size}_xla_vs_plain"] = xla / ours
            print(f"  XLA (jit_compile) float32: {xla * 1000:.0f} ms, {xla / ours:.2f}x the plain forward", flush=True)
    if 512 in [int(s) for s in args.sizes.split(",")]:
        result["forward_fraction_of_peak"] = result["forward_512_fraction_of_peak"]


def train_figures(args, peak: dict, result: dict):
    """The training step: ours (float32, bfloat16, multi-style) against the reference step and PyTorch's."""
    import tensorflow as tf

    import reference_steps

    b, sz = args.train_batch, args.train_size
    flops = train_step_flops(b, sz)
    single = ours_train_step("none", 1, b, sz, args.repeats)
    channels = ours_train_step("channels", 2, b, sz, args.repeats)
    cin = ours_train_step("cin", 2, b, sz, args.repeats)
    before = ours_train_step("channels", 2, b, sz, args.repeats, reference_steps.stylizer_step)
    bf16 = ours_train_step("channels", 2, b, sz, args.repeats, precision="mixed_bfloat16")
    theirs = torch_train_step(b, sz, args.repeats)
    result.update(train_vs_torch=channels / theirs, train_bf16_vs_torch=bf16 / theirs,
                  train_bf16_fraction_of_peak=flops / bf16 / 1e9 / peak["mixed_bfloat16"],
                  train_vs_baseline=channels / before, train_fraction_of_peak=flops / channels / 1e9 / peak["float32"],
                  multi_channels_vs_single=channels / single, multi_cin_vs_single=cin / single,
                  multi_vs_single=max(channels, cin) / single)
    print(f"train step (batch {b} at {sz}, VGG16 losses, {flops / 1e9:.0f} GFLOP): ours {channels * 1000:.0f} ms "
          f"({speed(channels, flops, peak['float32'])}), before the speed work {before * 1000:.0f} ms, PyTorch "
          f"{theirs * 1000:.0f} ms -> {channels / theirs:.2f}x PyTorch, {channels / before:.2f}x before; "
          f"mixed_bfloat16 {bf16 * 1000:.0f} ms ({speed(bf16, flops, peak['mixed_bfloat16'])}) -> "
          f"{bf16 / theirs:.2f}x PyTorch", flush=True)
    print(f"multi-style vs single-style step: channels {channels / single:.3f}x, cin {cin / single:.3f}x "
          f"(single {single * 1000:.0f} ms)", flush=True)
    if args.xla:
        xla_step = lambda *a: S.make_train_step(*a, jit_compile=True)  # noqa: E731
        try:
            xla = ours_train_step("channels", 2, b, sz, args.repeats, xla_step)
            result["train_xla_vs_plain"] = xla / channels
            print(f"  XLA (jit_compile): {xla * 1000:.0f} ms, {xla / channels:.2f}x the plain step", flush=True)
        except tf.errors.InvalidArgumentError as e:  # an op XLA cannot compile on this device
            print(f"  XLA (jit_compile): does not compile: {str(e).splitlines()[0][:200]}", flush=True)


def vae_and_gatys_figures(args, peak: dict, result: dict):
    """The VAE step against the reference step, feed-forward against Gatys at 512 px, and the tiled stylize's
    peak memory."""
    vae = vae_steps(args.repeats)
    result["vae_step_vs_baseline"] = vae["mixed_bfloat16"] / vae["reference"]
    result["vae_step_f32_vs_baseline"] = vae["float32"] / vae["reference"]
    result["vae_step_bf16_fraction_of_peak"] = vae["flops"] / vae["mixed_bfloat16"] / 1e9 / peak["mixed_bfloat16"]
    print(f"VAE step of the seed-decoder continuum VAE ({vae['flops'] / 1e9:.0f} GFLOP): before the speed work "
          f"{vae['reference'] * 1000:.0f} ms "
          f"({speed(vae['reference'], vae['flops'], peak['float32'])}); now float32 {vae['float32'] * 1000:.0f} ms "
          f"({vae['float32'] / vae['reference']:.2f}x), mixed_bfloat16 {vae['mixed_bfloat16'] * 1000:.0f}"
          f" ms ({vae['mixed_bfloat16'] / vae['reference']:.2f}x; "
          f"{speed(vae['mixed_bfloat16'], vae['flops'], peak['mixed_bfloat16'])})", flush=True)
    forward_512 = ours_forward(512, "float32", args.repeats)
    per_iter = optimize_iteration(512)
    result["vs_optimize_512"] = per_iter * 500 / forward_512
    print(f"512x512: feed-forward {forward_512 * 1000:.0f} ms vs Gatys 500 iterations ~{per_iter * 500:.0f} s "
          f"({per_iter * 1000:.0f} ms/iter measured) -> {per_iter * 500 / forward_512:.0f}x faster", flush=True)
    if args.huge:
        proc = subprocess.run([sys.executable, "-c", HUGE, str(ROOT), str(args.huge)], capture_output=True,
                              text=True)
        if proc.returncode == 0:
            base, top, seconds, shape = proc.stdout.split()[-4:]
            result[f"peak_memory_{args.huge}_mib"] = float(top)
            print(f"tiled stylize {shape} (tile 512): peak RSS {top} MiB ({base} MiB before), {seconds} s")
        else:
            print(f"tiled stylize {args.huge}: failed: {proc.stderr.strip().splitlines()[-1:]}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import tensorflow as tf
    import torch

    print(f"TensorFlow {tf.__version__} ({tf.config.threading.get_intra_op_parallelism_threads() or 'all'} "
          f"threads), PyTorch {torch.__version__} ({torch.get_num_threads()} threads)", flush=True)
    peak = {"float32": gemm_peak("float32", args.repeats), "mixed_bfloat16": gemm_peak("bfloat16", args.repeats)}
    print(f"dense matmul peak through TensorFlow: float32 {peak['float32']:.0f} GFLOP/s, "
          f"bfloat16 {peak['mixed_bfloat16']:.0f} GFLOP/s", flush=True)
    result = {"peak_gflops_float32": peak["float32"], "peak_gflops_bfloat16": peak["mixed_bfloat16"]}
    forward_figures(args, peak, result)
    train_figures(args, peak, result)
    vae_and_gatys_figures(args, peak, result)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: round(v, 4) for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
