"""One feed-forward network for a continuum of styles: Johnson et al. 2016 ("Perceptual Losses for Real-Time Style
Transfer and Super-Resolution", arXiv 1603.08155) conditioned on style weights, trained with VGG16 content, style
(Gram) and total-variation losses against styles sampled from the VAE, or against style images directly.

    python stylizer.py train --samples runs/samples --content train2014/ --run-dir runs/sty   # the recommended route
    python stylizer.py train --recipe cpu-demo --samples runs/samples --content photos/ --run-dir runs/sty
    python stylizer.py train --style a.jpg --content photos/ --run-dir runs/single           # one style
    python stylizer.py train --style a.jpg --style b.jpg [--style c.jpg ...] --content photos/ --run-dir runs/mix
    python stylizer.py stylize --run-dir runs/sty photo.jpg --out out/ [--strength 0.3 | --weights a=.2,b=.8]
                               [--style NAME] [--sweep 5] [--preserve-color] [--max-side 1024] [--tile 512]
    python stylizer.py stylize --run-dir runs/sty photo.jpg --strength-map map.png --out out/    # per-pixel strength
    python stylizer.py stylize --run-dir runs/sty --video in.mp4 --out out.mp4 [--strength-ramp 0:1] [--stable]
    python stylizer.py export --run-dir runs/sty --out exported/ [--tflite] [--overwrite]
    python stylizer.py optimize photo.jpg --style a.jpg [--style b.jpg --weights .7,.3] --out o.png
    python stylizer.py evaluate --run-dir runs/sty --content photos/ [--strengths 11] [--out RUN/evaluate.json]
    python stylizer.py serve --run-dir runs/sty [--port 7860] [--host 127.0.0.1]       # the web studio

Styles: `--samples` (a style_sampler.py folder: the VAE's continuum), or `--style` images: one for a single-style
net, two or more for direct Gram mixing (each example a random pair of the styles at a strength t ~ U(0, 1), or a
pure style). Conditioning (the `conditioning` setting): `cin` (the default: conditional instance norm, Dumoulin et
al. 2017, arXiv 1610.07629, a per-style scale and shift in every norm layer mixed by the style weights),
`channels` (the original design: RGB plus one constant plane per style weight, also added after every norm),
`balance` (two styles: one plane with the weight of B) and `none` (a single style). A strength s means weights
1 - s on the first style and s on the last.

This file holds training and the CLI; the rest lives in its siblings: stylizer_run.py (the config and loading a
run), stylizer_net.py (layers, the network, strength -> weights), stylizer_data.py (style targets, Gram cache,
content stream), stylizer_apply.py (stylize, strength maps, colour preservation, tiles, export), stylizer_video.py
(video, stable), stylizer_eval.py (Gatys et al. optimisation baseline, evaluate, plot), stylizer_studio.py (the web
studio).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

import image_utilities as iu
from distribute import distributed_step, dtype_policy, make_strategy, per_replica, task_role, worker_share
from run_config import PRECISIONS, RunError, add_config_args, add_run_args, apply_recipe, config_from_args, lr_at
from run_dir import EXIT_CODES, Run
from stylizer_run import STABLE_MODES, StylizerConfig, load_stylizer

# The siblings import TensorFlow (about 4 s), so this file imports them inside the functions that do the work:
# `--help` and a mistyped flag answer at once.

SNAPSHOT_STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


# --------------------------------------------------------------------------------------------------------------------
# Training

def make_train_step(net, vgg, content_vgg, optimizer, config: StylizerConfig, layers, strategy, jit_compile=False,
                    gram_matrix=None):
    """One compiled step over the global batch, split across the strategy's replicas: (content, weights, Gram
    targets) -> {"loss", "content", "style", "tv"}, each the global-batch mean. jit_compile: XLA; gram_matrix:
    another Gram function (benchmarks/reference_steps.py passes the einsum one it replaced)."""
    import tensorflow as tf

    import perceptual
    from perceptual import content_loss, style_loss, total_variation_loss

    gram_matrix = gram_matrix or perceptual.gram_matrix

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

    return distributed_step(strategy, replica_step, jit_compile)


def write_snapshot(run: Run, net, step: int, contents, num_styles: int):
    """Fixed content crops (rows) x strengths 0, .25, .5, .75, 1 (columns)."""
    from stylizer_apply import stylize_array
    from stylizer_net import strength_weights

    ws = strength_weights(num_styles, SNAPSHOT_STRENGTHS)
    images = [stylize_array(net, c, w) for c in contents for w in ws]
    iu.save_image(run.snapshot_path(step), iu.image_grid(images, cols=len(ws)))


def train(config: StylizerConfig, run_dir) -> int:
    import keras
    import tensorflow as tf

    from content_stream import ContentStream, content_dataset, content_files
    from perceptual import vgg_features
    from stylizer_data import STYLE_LAYERS, StyleTargets
    from stylizer_net import build_stylizer

    strategy = make_strategy(config.strategy, config.devices, config.logical_cpus)
    chief, task = task_role(strategy)
    layers = list(STYLE_LAYERS)
    run = Run(run_dir, config, chief=chief, task=task)
    with strategy.scope(), dtype_policy(config.precision):
        vgg = vgg_features(sorted(set(layers) | {config.content_layer}), name="loss_vgg")
        content_vgg = vgg_features([config.content_layer], name="content_vgg")
    targets = StyleTargets(config, vgg, layers)
    if config.conditioning == "none" and targets.num_styles != 1:
        raise ValueError("--conditioning none is the single-style baseline: give one --style")
    share = worker_share(strategy)
    if config.batch_size % share[1]:
        raise RunError(f"--batch-size {config.batch_size} must be divisible by the {share[1]} workers")
    files = content_files(config.content, run.path, write=chief, shares=share[1])  # listed once, then read
    stream = ContentStream(files, config.size, config.seed, run.path / "bad_content.txt" if chief else None, share,
                           folder=config.content)
    keras.utils.set_random_seed(config.seed)
    with strategy.scope(), dtype_policy(config.precision):
        net = build_stylizer(targets.num_styles, config.conditioning)
        optimizer = keras.optimizers.Adam(config.lr)
        if config.precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(net.trainable_variables)
    # Each worker's place in its own share of the photos (saved in its own checkpoint folder, restored from there).
    position = tf.Variable(0, dtype=tf.int64, name="data_position", trainable=False)
    run.checkpoint(net=net, optimizer=optimizer, data_position=position, own=("data_position",))
    start = run.restore()
    if chief:
        iu.atomic_write_json(run.path / "styles.json", {"style_names": targets.names,
                                                        "num_styles": targets.num_styles})
    train_step = make_train_step(net, vgg, content_vgg, optimizer, config, layers, strategy)
    snap_contents = stream.fixed_crops(3)
    if start:
        print(f"resuming {run.path} from step {start} (content position {int(position.numpy())})", flush=True)
    batches = iter(content_dataset(stream, int(position.numpy()), config.batch_size // share[1],
                                   config.data_workers))

    def step_fn(step):
        content, next_position = (v.numpy() for v in next(batches))
        weights, grams = targets.batch(np.random.default_rng([config.seed, step, 5]), config.batch_size)
        grams = {k: v.astype(np.float32) for k, v in grams.items()}
        extra = {}
        if config.lr_schedule != "constant":  # the compiled step reads the variable at each call
            extra["lr"] = lr_at(config, step)
            optimizer.learning_rate.assign(extra["lr"])
        content = per_replica(strategy, config.batch_size, content, local=True)[0]  # this worker's share
        metrics = train_step(content, *per_replica(strategy, config.batch_size, weights.astype(np.float32), grams))
        position.assign(next_position)  # saved with the checkpoint: resume reads the next unread content item
        return {**metrics, **extra}

    status = run.train_loop(start, config.steps, config, step_fn,
                            lambda step: write_snapshot(run, net, step, snap_contents, targets.num_styles))
    if status != "done":
        return EXIT_CODES[status]
    if stream.bad:
        print(f"skipped {len(stream.bad)} unreadable content files (listed in {run.path / 'bad_content.txt'})")
    return 0


# --------------------------------------------------------------------------------------------------------------------
# CLI: one function per subcommand

def train_command(args) -> int:
    if bool(args.samples) == bool(args.style_images):
        return iu.fail("give either --samples DIR or --style IMG (once for one style, more to mix them)")
    if not args.content:
        return iu.fail("give --content FOLDER: photos to train on (COCO's train2014 in real use; see README)")
    config = resolved_train_config(args)
    if config.end_share and config.strength_draw == "ends":
        return iu.fail("end_share draws a share of the examples at the ends; strength_draw ends draws them all there")
    if len(config.style_images) > 1 and config.conditioning == "none":
        return iu.fail("conditioning none is the single-style net: give one --style, or --set conditioning=cin")
    return train(config, args.run_dir)


def resolved_train_config(args) -> StylizerConfig:
    """The settings a train command asks for, with what does not apply to its styles resolved, as config.json
    records them: a single style needs no conditioning and has no ends to draw at; only sampled styles are
    anchored on their paintings."""
    asked = config_from_args(StylizerConfig, args)  # defaults, then the recipe, --set and flags
    single = len(asked.style_images) == 1
    return dataclasses.replace(
        asked, samples=str(asked.samples), style_images=tuple(str(Path(s).resolve()) for s in asked.style_images),
        content=str(Path(asked.content)), conditioning="none" if single else asked.conditioning,
        end_share=0.0 if single else asked.end_share, anchor_ends=asked.anchor_ends and bool(asked.samples))


def stylize_command(args) -> int:
    from stylizer_apply import load_weight_map, parse_weights, stylize_files

    if args.sweep and args.sweep < 2:
        return iu.fail("--sweep needs at least 2 strengths")
    if args.tile is not None and args.tile < 32:
        return iu.fail("--tile must be at least 32 pixels")
    if args.max_side is not None and args.max_side < 16:
        return iu.fail(f"--max-side {args.max_side}: the longer side must be at least 16 pixels")
    mapped = args.strength_map or args.weights_map
    if mapped and (args.sweep or args.strength_ramp):
        return iu.fail("a strength map sets the weights per pixel: it does not combine with --sweep or "
                       "--strength-ramp")
    net, _, names = load_stylizer(args.run_dir)
    weights = parse_weights(names, args.strength, args.weights, args.style)
    weight_map = load_weight_map(len(names), args.strength_map, args.weights_map) if mapped else None
    if args.video:
        return stylize_videos(args, net, names, weights, weight_map)
    written, failed, skipped = stylize_files(net, names, args.inputs, args.out, weights, args.sweep,
                                             args.preserve_color, args.max_side, args.tile, args.overwrite,
                                             weight_map)
    if args.tile:
        import resource
        print(f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if skipped:
        print(f"skipped {len(skipped)} inputs whose output exists (--overwrite replaces them): "
              f"{', '.join(str(p) for p in skipped[:5])}{' ...' if len(skipped) > 5 else ''}")
    if failed:
        return iu.fail(f"{failed} of {written + failed + len(skipped)} inputs failed", code=1)
    if not written and not skipped:
        return iu.fail("no images found in the inputs")
    return 0


def stylize_videos(args, net, names, weights, weight_map=None) -> int:
    from stylizer_apply import output_names, parse_ramp, parse_weights
    from stylizer_video import stylize_video

    ramp = parse_ramp(args.strength_ramp) if args.strength_ramp else None

    def weights_at(i, n):
        if ramp is None:
            return weights
        return parse_weights(names, ramp[0] + (ramp[1] - ramp[0]) * i / max(n - 1, 1))

    failed = 0
    single = args.out.suffix.lower() == ".mp4"
    for src, name in output_names(args.inputs, ".mp4").items():
        dst = args.out if single else args.out / name
        if dst.exists() and not args.overwrite:
            print(f"skipped {src}: {dst} exists (--overwrite replaces it)")
            continue
        try:
            frames = stylize_video(net, src, dst, weights_at, args.max_side, weight_map, args.preserve_color,
                                   args.stable)
            print(f"wrote {dst}: {frames} frames")
        except iu.ImageError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def export_command(args) -> int:
    from stylizer_apply import export, export_target_problem

    problem = export_target_problem(args.out, args.overwrite)
    if problem:  # before loading anything
        return iu.fail(problem)
    net, _, names = load_stylizer(args.run_dir)
    for path in export(net, len(names), args.out, args.tflite, args.overwrite, names):
        print(f"wrote {path}")
    return 0


def optimize_command(args) -> int:
    import time

    from stylizer_eval import optimize_image

    content = iu.resize_max_side(iu.load_image(args.image), args.max_side)
    styles = [iu.resize_max_side(iu.load_image(p), args.max_side) for p in args.style]
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


def evaluate_command(args) -> int:
    from stylizer_eval import evaluate, plot_evaluation

    net, config, names = load_stylizer(args.run_dir)
    result = evaluate(net, config, names, args.content, args.strengths)
    target = args.out or args.run_dir / "evaluate.json"
    iu.atomic_write_json(target, result)
    plot_evaluation(result, target.with_suffix(".png"))
    for r in result["per_strength"]:
        print("  ".join(f"{k} {v:.4g}" for k, v in r.items()))
    if "spearman_strength_vs_style_loss_to_A" in result:
        print(f"spearman(strength, style loss to A) = {result['spearman_strength_vs_style_loss_to_A']:.3f}")
    print(f"wrote {target} and {target.with_suffix('.png')}")
    return 0


def serve_command(args) -> int:
    from stylizer_studio import serve

    return serve(args.run_dir, args.host, args.port, args.samples, args.max_pixels)


def add_train_args(p):
    d = StylizerConfig()
    p.add_argument("--run-dir", type=Path, required=True, help="the run folder (resumed if it exists)")
    p.add_argument("--samples", default="", metavar="DIR", help="a style_sampler.py folder of sampled styles")
    p.add_argument("--style", dest="style_images", action="append", default=[], metavar="IMG",
                   help="instead of --samples: a style image; once for a single-style net, again for each style to "
                        "mix")
    p.add_argument("--content", default=d.content, metavar="DIR", help="folder of content photos, searched "
                                                                         "recursively (COCO's train2014 in real use)")
    add_config_args(p, StylizerConfig, "stylizer")
    p.add_argument("--size", type=int, default=d.size, help="side of the square training crops, in pixels")
    p.add_argument("--steps", type=int, default=d.steps, help="training steps in all (a resumed run continues)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch, split over the replicas")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    p.add_argument("--style-weight", type=float, default=d.style_weight,
                   help=f"weight of the style (Gram) loss; the content loss weighs {d.content_weight:g}")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="Keras dtype policy: mixed_bfloat16 (CPUs with AVX512-BF16 or AMX, GPUs since Ampere), "
                        "mixed_float16 (older GPUs; loss scaling), float32")
    p.add_argument("--seed", type=int, default=d.seed, help="seeds weights, content order, crops and styles")
    add_run_args(p, d, flags=("log_every", "checkpoint_every"))


def add_stylize_args(p):
    p.add_argument("inputs", nargs="+", type=Path, help="image files or folders (videos with --video)")
    p.add_argument("--run-dir", type=Path, required=True, help="a trained stylizer run folder")
    p.add_argument("--out", type=Path, required=True, help="output folder (with --video: a folder or an .mp4)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--strength", type=float,
                   help="weight of the last style (0 = the first style, 1 = the last) (default: 1)")
    g.add_argument("--weights", metavar="WEIGHTS",
                   help="one weight per style in order (0.2,0.8), or NAME=W for some styles and 0 for the rest "
                        "(starry_night=0.5,wave=0.5), summing to 1 (default: --strength)")
    g.add_argument("--style", metavar="NAME",
                   help="one of the net's styles alone, by name (its style image's name) (default: --strength)")
    g.add_argument("--strength-map", type=Path, metavar="MAP",
                   help="grayscale image: per pixel the weight of the last style (white = 1), resized to each input "
                        "(default: one strength for the whole picture)")
    g.add_argument("--weights-map", metavar="A.png,B.png,...",
                   help="one grayscale map per style, normalised to sum to 1 at every pixel (default: none)")
    p.add_argument("--sweep", type=int, default=0, metavar="N", help="write a strip of N strengths from 0 to 1")
    p.add_argument("--preserve-color", action="store_true", help="keep the content's colours (luminance transfer)")
    p.add_argument("--max-side", type=int,
                   help="first shrink inputs whose longer side exceeds this (default: keep their size)")
    p.add_argument("--tile", type=int, metavar="PX", help="process in overlapping PX tiles, for huge images "
                                                          "(default: the whole image at once)")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that exist (default: skip and list "
                                                              "them)")
    p.add_argument("--video", action="store_true", help="inputs are videos: write an mp4 of each")
    p.add_argument("--stable", nargs="?", const="flow", default="none", choices=STABLE_MODES,
                   help="video: temporal consistency; flow (the flag alone): blend the flow-warped previous output "
                        "where the flow is reliable; stats: smooth instance-norm statistics across frames; both")
    p.add_argument("--strength-ramp", metavar="A:B", help="video: sweep the strength from A to B over the clip "
                                                          "(default: --strength throughout)")


def add_optimize_args(p):
    d = StylizerConfig()
    p.add_argument("image", type=Path, help="the content photo")
    p.add_argument("--style", type=Path, action="append", required=True, metavar="IMG",
                   help="a style image; repeat to blend styles")
    p.add_argument("--weights", help="blend weights, one per --style (default: equal)")
    p.add_argument("--out", type=Path, required=True, help="the image to write")
    p.add_argument("--iters", type=int, default=500, help="optimisation steps")
    p.add_argument("--max-side", type=int, default=512, help="longer side of the result (and of the styles)")
    p.add_argument("--lr", type=float, default=0.02, help="Adam learning rate on the pixels")
    p.add_argument("--content-weight", type=float, default=d.content_weight, help="weight of the content loss")
    p.add_argument("--style-weight", type=float, default=d.style_weight, help="weight of the style (Gram) loss")
    p.add_argument("--tv-weight", type=float, default=d.tv_weight, help="weight of the total-variation loss")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=iu.HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name, run, description):
        p = sub.add_parser(name, help=description, description=description, formatter_class=iu.HelpFormatter)
        p.set_defaults(run=run)
        return p

    add_train_args(command("train", train_command, "train (or resume) a stylizer run"))
    add_stylize_args(command("stylize", stylize_command, "stylize images or videos at any strength"))
    p = command("export", export_command, "write a SavedModel (and optionally a .tflite) for serving")
    p.add_argument("--run-dir", type=Path, required=True, help="a trained stylizer run folder")
    p.add_argument("--out", type=Path, required=True, help="folder to write saved_model/ (and stylizer.tflite) into")
    p.add_argument("--tflite", action="store_true", help="also write stylizer.tflite")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier export in --out (only its own files; a folder holding anything else is "
                        "refused)")
    add_optimize_args(command("optimize", optimize_command,
                              "Gatys et al. optimisation baseline with the same VGG16 and losses"))
    p = command("evaluate", evaluate_command, "losses, LPIPS and speed across strengths, with a plot")
    p.add_argument("--run-dir", type=Path, required=True, help="a trained stylizer run folder")
    p.add_argument("--content", type=Path, required=True, help="folder of held-out content images")
    p.add_argument("--strengths", type=int, default=11, help="evenly spaced strengths from 0 to 1")
    p.add_argument("--out", type=Path, help="the JSON to write, with a .png plot beside it "
                                            "(default: RUN/evaluate.json)")
    p = command("serve", serve_command, "a local web studio: stylize with live sliders and a painted strength map, "
                                        "browse the style samples")
    p.add_argument("--run-dir", type=Path, required=True, help="a trained stylizer run folder")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind; the studio answers only requests that name it (or 127.0.0.1, localhost) "
                        "as their Host: from another machine, bind an address it can reach, or tunnel with ssh -L")
    p.add_argument("--port", type=int, default=7860, help="port to serve on (0: any free port)")
    p.add_argument("--samples", type=Path, help="style-sample folder to browse (default: the run's --samples)")
    p.add_argument("--max-pixels", type=int, default=16_000_000, help="largest upload accepted, in pixels")
    return parser


def main(argv=None) -> int:
    return iu.run_main(build_parser(), argv, prepare=apply_recipe)


if __name__ == "__main__":
    sys.exit(main())
