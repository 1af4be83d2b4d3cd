"""Does one network for a continuum of styles cost quality? Trains, with the same step budget, data and seed:
single-style nets for A and for B, multi-style `channels` and `cin` nets on VAE-sampled styles, and the direct
Gram-mixing baseline (no VAE, `channels`). Then, on held-out content, it compares each multi-style net at strength 0
and 1 with the single-style net of that style (content + style loss against the real style image), and measures
how monotonically the output moves from A to B (Spearman of strength vs style loss to A).

    python benchmarks/multistyle_experiment.py                    # small CPU config (see --help for its budget)
    python benchmarks/multistyle_experiment.py --size 256 --steps 20000 --vae-size 224 --vae-steps 20000 \
        --content res/coco/train2014/train2014                       # the full configuration, for a GPU

Defaults: styles starry_night and the_scream from ../shared/data/styles (built-in styles if absent); training
content: the built-in content set (or --content); held-out content: ../shared/data/content (or built-in scenes
with other seeds). Runs live under runs/experiment/ and resume if interrupted. Writes docs/multistyle_sweeps.png
and runs/experiment/results.json. Targets: loss at strengths 0 and 1 <= 1.10x the single-style nets;
Spearman >= 0.95.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import builtin_images  # noqa: E402
import image_utilities as iu  # noqa: E402
import style_sampler  # noqa: E402
import stylizer as S  # noqa: E402
import vae_keras as V  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def held_out_content(size: int, folder=None) -> list[np.ndarray]:
    files = iu.list_images(folder) if folder else (iu.list_images(SHARED / "content") if SHARED.exists() else [])
    if files:
        return [iu.square_crop(iu.load_image(f), size) for f in files]
    return [builtin_images.procedural_scene(size, seed) for seed in (11, 12, 13)]


def losses_against(net, images, weights, target, config, vgg, layers):
    """Mean content + style loss (with the training weights) of the net's outputs against real style Grams."""
    import tensorflow as tf

    from perceptual import content_loss, gram_matrix, style_loss

    out = np.asarray(net({"image": images, "weights": np.repeat(weights[None], len(images), 0)}, training=False))
    fo, fc = vgg(out), vgg(images)
    c = content_loss(fo["relu2_2"], fc["relu2_2"])
    s = style_loss({n: gram_matrix(fo[n]) for n in layers}, target, layers)
    total = config.content_weight * c + config.style_weight * s
    return float(tf.reduce_mean(total)), float(tf.reduce_mean(s)), out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=iu.HelpFormatter)
    ap.add_argument("--style", action="append", default=[], metavar="IMG",
                    help="a style image, twice: A then B (default: starry_night and the_scream, else built-in)")
    ap.add_argument("--content", type=Path, help="training content folder (default: built-in content)")
    ap.add_argument("--held-out", type=Path, help="held-out content folder (default: ../shared/data/content)")
    ap.add_argument("--size", type=int, default=128, help="stylizer training crop (and style scale), in pixels")
    ap.add_argument("--steps", type=int, default=400, help="training steps of every stylizer")
    ap.add_argument("--batch-size", type=int, default=4, help="stylizer batch")
    ap.add_argument("--vae-size", type=int, default=64, help="VAE crop size")
    ap.add_argument("--vae-steps", type=int, default=1500, help="training steps of each VAE")
    ap.add_argument("--pairs", type=int, default=24, help="sampled pairs per VAE")
    ap.add_argument("--vae-recons", default="mse,gram", help="VAE reconstruction losses to compare")
    ap.add_argument("--strengths", type=int, default=11, help="evenly spaced strengths of the evaluation")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "experiment", help="folder of the runs and results")
    ap.add_argument("--figure", type=Path, default=ROOT / "docs" / "multistyle_sweeps.png", help="the sweep figure")
    args = ap.parse_args(argv)
    import stylizer_apply as A
    import stylizer_data as D
    import stylizer_eval as E
    import stylizer_net as N

    styles = args.style or [str(SHARED / "styles" / n) for n in ("starry_night.jpg", "the_scream.jpg")
                            if (SHARED / "styles" / n).exists()]
    out = args.out
    if len(styles) != 2:
        defaults = builtin_images.write_defaults(out / "defaults", 512)
        styles = [str(p) for p in defaults["styles"]]
    content = args.content
    if content is None:
        content = out / "defaults" / "content"
        builtin_images.write_defaults(out / "defaults", 256)
    t_start = time.perf_counter()
    timings = {}

    def timed(name, fn):
        t0 = time.perf_counter()
        code = fn()
        timings[name] = time.perf_counter() - t0
        if code != 0:
            raise SystemExit(f"{name} failed with exit code {code}")

    # 1. A VAE and its samples per reconstruction loss (run names: vae, samples for mse; vae_gram, samples_gram ...)
    recons = args.vae_recons.split(",")
    suffix = {r: "" if r == "mse" else f"_{r}" for r in recons}
    for recon in recons:
        vae_dir, samples_dir = out / f"vae{suffix[recon]}", out / f"samples{suffix[recon]}"
        vae_cmd = ["train", "--run-dir", str(vae_dir), "--size", str(args.vae_size), "--style-size", str(args.size),
                   "--latent-dim", "32", "--steps", str(args.vae_steps), "--batch-size", "16", "--lr", "1e-3",
                   "--beta", "0.02", "--recon", recon, "--log-every", "250", "--snapshot-every", "500",
                   "--encode-crops", "256"]
        for s in styles:
            vae_cmd += ["--style", s]
        timed(f"vae{suffix[recon]}", lambda cmd=vae_cmd: V.main(cmd))
        timed(f"sampler{suffix[recon]}", lambda v=vae_dir, s=samples_dir: style_sampler.main(
            ["--vae", str(v), "--out", str(s), "--pairs", str(args.pairs), "--points", "9"]))
    # 2. Stylizers, one budget for all
    common = ["--content", str(content), "--size", str(args.size), "--steps", str(args.steps), "--batch-size",
              str(args.batch_size), "--seed", "0", "--log-every", "50", "--snapshot-every", str(args.steps),
              "--checkpoint-every", "100"]
    runs = {
        "single_A": ["--style", styles[0], "--conditioning", "none"],
        "single_B": ["--style", styles[1], "--conditioning", "none"],
        "mix_channels": ["--style", styles[0], "--style", styles[1], "--conditioning", "channels"],
    }
    for recon in recons:
        for cond in ("channels", "cin"):
            runs[f"vae{suffix[recon]}_{cond}"] = ["--samples", str(out / f"samples{suffix[recon]}"),
                                                  "--conditioning", cond]
    for name, extra in runs.items():
        timed(name, lambda name=name, extra=extra: S.main(["train", "--run-dir", str(out / name), *extra, *common]))
    N.set_precision("float32")

    # 3. Evaluation on held-out content against the real style images
    from perceptual import vgg_features
    layers = list(D.STYLE_LAYERS)
    vgg = vgg_features(sorted(set(layers) | {"relu2_2"}), name="experiment_vgg")
    targets = D.style_image_grams(styles, args.size, vgg, layers)
    images = np.stack(held_out_content(args.size, args.held_out))
    nets = {name: S.load_stylizer(out / name) for name in runs}
    config = nets["mix_channels"][1]
    single = {0: losses_against(nets["single_A"][0], images, np.ones(1, np.float32), targets[0], config, vgg,
                                layers)[0],
              1: losses_against(nets["single_B"][0], images, np.ones(1, np.float32), targets[1], config, vgg,
                                layers)[0]}
    ts = np.linspace(0.0, 1.0, args.strengths)
    results, sweeps = {"single_A_loss": single[0], "single_B_loss": single[1]}, {}
    multi = [name for name in runs if not name.startswith("single")]
    for name in multi:
        net = nets[name][0]
        row, style_to_a, frames = {}, [], []
        for t in ts:
            w = N.strength_weights(2, [t])[0]
            _, s_a, outs = losses_against(net, images, w, targets[0], config, vgg, layers)
            style_to_a.append(s_a)
            frames.append(outs[0])
        row["loss_at_0_vs_single"] = losses_against(net, images, np.array([1, 0], np.float32), targets[0], config,
                                                    vgg, layers)[0] / single[0]
        row["loss_at_1_vs_single"] = losses_against(net, images, np.array([0, 1], np.float32), targets[1], config,
                                                    vgg, layers)[0] / single[1]
        row["spearman_strength_vs_style_loss_to_A"] = E.spearman(ts, style_to_a)
        row["train_seconds"] = timings[name]
        results[name] = row
        sweeps[name] = frames
    results["single_train_seconds"] = {k: timings[k] for k in ("single_A", "single_B")}
    results["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    results["styles"] = styles
    results["total_minutes"] = (time.perf_counter() - t_start) / 60
    iu.atomic_write_json(out / "results.json", results)

    # 4. Figure: methods (rows) x strength (columns) on the first held-out image, plus the single-style nets.
    cols = [0, len(ts) // 4, len(ts) // 2, 3 * len(ts) // 4, len(ts) - 1]
    a_img = A.stylize_array(nets["single_A"][0], images[0], [1.0])
    b_img = A.stylize_array(nets["single_B"][0], images[0], [1.0])
    blank = np.ones_like(images[0])
    rows = [[images[0], a_img, blank, blank, blank, b_img]]
    captions = [["content", "single A", "", "", "", "single B"]]
    for name, frames in sweeps.items():
        rows.append([blank] + [frames[i] for i in cols])
        captions.append([name] + [f"t={ts[i]:.2f}" for i in cols])
    grid = iu.image_grid([im for r in rows for im in r], cols=6, captions=[c for r in captions for c in r])
    iu.save_image(args.figure, iu.resize_max_side(grid, 1200))

    print("\n| method | loss at 0 vs single A | loss at 1 vs single B | Spearman(strength, style loss to A) | "
          "train s |\n|---|---|---|---|---|")
    for name in sweeps:
        r = results[name]
        print(f"| {name} | {r['loss_at_0_vs_single']:.2f}x | {r['loss_at_1_vs_single']:.2f}x | "
              f"{r['spearman_strength_vs_style_loss_to_A']:.3f} | {r['train_seconds']:.0f} |")
    print(f"| single_A / single_B | 1.00x | 1.00x | - | {timings['single_A']:.0f} / {timings['single_B']:.0f} |")
    print(f"\nwrote {out / 'results.json'} and {args.figure}; {results['total_minutes']:.1f} minutes in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
