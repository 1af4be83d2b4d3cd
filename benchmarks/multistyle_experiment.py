"""Does one network for a continuum of two styles cost quality, and do the VAE's samples help? Trains, with the same
budget, content and seed, at the recommended route's settings (the scripts' defaults) and the CPU demo's sizes
(recipes/cpu-demo.toml): single-style nets for A and for B, the direct Gram-mixing net (`mix`: --style A --style B),
the VAE of the two paintings with its samples, and the net on those samples (`route`, make demo's); and any
--variant NAME="more stylizer.py train flags" as a net on the samples with those flags. On held-out photographs it
compares each two-style net at strength 0 and 1 with the single-style net of that style (content + style loss
against the real painting) and measures how monotonically the output moves from A to B (Spearman of strength vs
style loss to A). The samples are measured first (sample_fidelity.py).

    python benchmarks/multistyle_experiment.py                           # the CPU configuration (about an hour)
    python benchmarks/multistyle_experiment.py --variant planes="--set conditioning=channels"
    python benchmarks/multistyle_experiment.py --stylizer-seed 1 --out runs/experiment_s1   # benchmarks/seed_spread.py

Defaults: styles starry_night and the_scream (../shared/data/styles; the built-in styles without them), training
content ../shared/data/content-train, held-out content ../shared/data/content. Runs live under --out and resume.
Writes OUT/results.json and the figures (sweeps.png, continuum_vs_mixing.png; --figure names the first). Targets:
loss at strengths 0 and 1 <= 1.10x the single-style nets; Spearman >= 0.95.
"""
import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import builtin_images  # noqa: E402
import image_utilities as iu  # noqa: E402
import sample_fidelity  # noqa: E402
import sample_folder  # noqa: E402
import style_sampler  # noqa: E402
import stylizer as S  # noqa: E402
import stylizer_apply as A  # noqa: E402
import stylizer_eval as E  # noqa: E402
import stylizer_net as N  # noqa: E402
import stylizer_run as R  # noqa: E402
import vae_keras as V  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
DEFAULT_OUT = ROOT / "runs" / "experiment"


def held_out_content(size: int, folder=None) -> list[np.ndarray]:
    files = iu.list_images(folder) if folder else (iu.list_images(SHARED / "content") if SHARED.exists() else [])
    if files:
        return [iu.center_crop(iu.resize_short_side(iu.load_image(f), size), size) for f in files]
    return [builtin_images.procedural_scene(size, seed) for seed in (11, 12, 13)]


def losses_against(net, images, weights, target, config, vgg, layers):
    """Mean content + style loss (with the training weights) of the net's outputs against real style Grams."""
    out = np.asarray(net({"image": images, "weights": np.repeat(weights[None], len(images), 0)}, training=False))
    total, style = image_losses(out, images, target, config, vgg, layers)
    return total, style, out


def image_losses(out, images, target, config, vgg, layers):
    import tensorflow as tf

    from perceptual import content_loss, gram_matrix, style_loss

    fo, fc = vgg(out), vgg(images)
    c = content_loss(fo[config.content_layer], fc[config.content_layer])
    s = style_loss({n: gram_matrix(fo[n]) for n in layers}, target, layers)
    return float(tf.reduce_mean(config.content_weight * c + config.style_weight * s)), float(tf.reduce_mean(s))


def default_inputs(args, out: Path):
    styles = args.style or [str(SHARED / "styles" / n) for n in ("starry_night.jpg", "the_scream.jpg")
                            if (SHARED / "styles" / n).exists()]
    if len(styles) != 2:
        styles = [str(p) for p in builtin_images.write_defaults(out / "defaults", 512)["styles"]]
    content = args.content
    if content is None:
        content = SHARED / "content-train"
        if not content.is_dir():
            content = out / "defaults" / "content"
            builtin_images.write_defaults(out / "defaults", 256)
    return styles, content


def linked_timing(folder: Path | None, stage: str) -> float | None:
    """The seconds a stage took in the experiment whose folder `folder` links to (another --out's VAE or samples,
    linked in to measure stylizer seeds), from that experiment's timings.json: here it only resumed. None when the
    folder is not a link or the other experiment has no record of the stage."""
    if folder is None or not folder.is_symlink():
        return None
    theirs = folder.resolve().parent / "timings.json"
    return json.loads(theirs.read_text()).get(stage) if theirs.exists() else None


def train_all(args, styles, content, out: Path, timings: dict) -> dict:
    """The VAE, its samples and every stylizer (each resumes); returns {net name: stylizer.py train flags}."""
    def timed(name, fn, folder=None):
        t0 = time.perf_counter()
        code = fn()
        if code != 0:
            raise SystemExit(f"{name} failed with exit code {code}")
        if name not in timings:
            timings[name] = linked_timing(folder, name) or time.perf_counter() - t0
            iu.atomic_write_json(out / "timings.json", timings)

    vae = ["train", "--recipe", "cpu-demo", "--run-dir", str(out / "vae"), "--steps", str(args.vae_steps),
           "--style-size", str(args.size), *[a for s in styles for a in ("--style", s)]]
    timed("vae", lambda: V.main(vae), out / "vae")
    timed("sampler", lambda: style_sampler.main(["--recipe", "cpu-demo", "--vae", str(out / "vae"), "--out",
                                                 str(out / "samples"), "--pairs", str(args.pairs)]), out / "samples")
    common = ["--recipe", "cpu-demo", "--content", str(content), "--size", str(args.size), "--steps",
              str(args.steps), "--seed", str(args.stylizer_seed), "--log-every", "50", "--checkpoint-every", "100",
              "--set", f"snapshot_every={args.steps}"]
    runs = {"single_A": ["--style", styles[0]], "single_B": ["--style", styles[1]],
            "mix": ["--style", styles[0], "--style", styles[1]], "route": ["--samples", str(out / "samples")]}
    for spec in args.variant:
        name, _, flags = spec.partition("=")
        runs[name] = ["--samples", str(out / "samples"), *shlex.split(flags)]
    for name in filter(None, args.skip.split(",")):
        runs.pop(name, None)
    for name, extra in runs.items():
        timed(name, lambda name=name, extra=extra: S.main(["train", "--run-dir", str(out / name), *common, *extra]),
              out / name)  # a variant's own flags come last: they win
    return runs


def evaluate(args, styles, out: Path, runs: dict) -> tuple[dict, dict]:
    """Per two-style net: its losses at strengths 0 and 1 over the single-style nets', and its Spearman; and the
    sweeps of the first held-out photo."""
    from perceptual import vgg_features
    from stylizer_data import STYLE_LAYERS, style_image_grams

    layers = list(STYLE_LAYERS)
    nets = {name: R.load_stylizer(out / name) for name in runs}
    config = nets["single_A"][1]  # the loss weights, which every net shares
    vgg = vgg_features(sorted(set(layers) | {config.content_layer}), name="experiment_vgg")
    targets = style_image_grams(styles, args.size, vgg, layers)
    images = np.stack(held_out_content(args.size, args.held_out))
    one = np.ones(1, np.float32)
    single = {0: losses_against(nets["single_A"][0], images, one, targets[0], config, vgg, layers)[0],
              1: losses_against(nets["single_B"][0], images, one, targets[1], config, vgg, layers)[0]}
    ts = np.linspace(0.0, 1.0, args.strengths)
    results, sweeps = {"single_A_loss": single[0], "single_B_loss": single[1]}, {}
    for name in [n for n in runs if not n.startswith("single")]:
        style_to_a, frames, end_loss = [], [], {}
        for t in ts:
            total, s_a, outs = losses_against(nets[name][0], images, N.strength_weights(2, [t])[0], targets[0],
                                              config, vgg, layers)
            style_to_a.append(s_a)
            frames.append(outs[0])
            if t in (0.0, 1.0):
                end_loss[t] = total if t == 0.0 else image_losses(outs, images, targets[1], config, vgg, layers)[0]
        results[name] = {"loss_at_0_vs_single": end_loss[0.0] / single[0],
                         "loss_at_1_vs_single": end_loss[1.0] / single[1],
                         "spearman_strength_vs_style_loss_to_A": E.spearman(ts, style_to_a)}
        sweeps[name] = frames
    return results, {"sweeps": sweeps, "ts": ts, "images": images, "nets": nets}


def write_figures(path: Path, out: Path, shown: dict):
    """sweeps.png: each two-style net's sweep (rows) of the first held-out photo next to the single-style nets;
    continuum_vs_mixing.png: the VAE's first two pair walks over the sweeps of the route's and the mixing net."""
    sweeps, ts, images, nets = shown["sweeps"], shown["ts"], shown["images"], shown["nets"]
    cols = [0, len(ts) // 4, len(ts) // 2, 3 * len(ts) // 4, len(ts) - 1]
    blank = np.ones_like(images[0])
    rows = [[images[0], A.stylize_array(nets["single_A"][0], images[0], [1.0]), blank, blank, blank,
             A.stylize_array(nets["single_B"][0], images[0], [1.0])]]
    captions = [["content", "single A", "", "", "", "single B"]]
    for name, frames in sweeps.items():
        rows.append([blank] + [frames[i] for i in cols])
        captions.append([name] + [f"t={ts[i]:.2f}" for i in cols])
    grid = iu.image_grid([im for r in rows for im in r], cols=6, captions=[c for r in captions for c in r])
    iu.save_image(path, iu.resize_max_side(grid, 1200))
    if "route" not in sweeps or "mix" not in sweeps:
        return
    entries = sample_folder.read_manifest(out / "samples")
    rows, captions = [], []
    for p in (0, 1):
        pair = sorted((e for e in entries if e["pair"] == p), key=lambda e: e["t"])
        rows.append([iu.resize(iu.load_image(out / "samples" / e["file"]), 128, 128) for e in pair])
        captions.append([f"VAE pair {p} t={e['t']:.2f}" for e in pair])
    picks = np.linspace(0, len(ts) - 1, len(rows[0])).round().astype(int)
    for name in ("route", "mix"):
        rows.append([iu.resize(sweeps[name][i], 128, 128) for i in picks])
        captions.append([f"{name} t={ts[i]:.2f}" for i in picks])
    grid = iu.image_grid([im for r in rows for im in r], cols=len(rows[0]), captions=[c for r in captions for c in r])
    iu.save_image(path.with_name("continuum_vs_mixing.png"), iu.resize_max_side(grid, 1400))


def print_tables(results: dict, timings: dict):
    print("\n| net | loss at 0 vs single A | loss at 1 vs single B | Spearman(strength, style loss to A) | "
          "train s |\n|---|---|---|---|---|")
    for name, r in results.items():
        if isinstance(r, dict) and "loss_at_0_vs_single" in r:
            print(f"| {name} | {r['loss_at_0_vs_single']:.2f}x | {r['loss_at_1_vs_single']:.2f}x | "
                  f"{r['spearman_strength_vs_style_loss_to_A']:.3f} | {timings.get(name, 0):.0f} |")
    f = results["sample_fidelity"]
    print(f"\nsamples: diversity {f['diversity_ratio_t0']:.2f}x / {f['diversity_ratio_t1']:.2f}x real crops, endpoint "
          f"Gram error {f['gram_error_t0']:.3f} / {f['gram_error_t1']:.3f} (real crops {f['gram_error_floor_t0']:.3f} "
          f"/ {f['gram_error_floor_t1']:.3f}), Spearman {f['spearman_mean']:.3f}, largest step "
          f"{f['step_ratio_max']:.2f}x the mean")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=iu.HelpFormatter)
    ap.add_argument("--style", action="append", default=[], help="the two styles (default: Starry Night, Scream)")
    ap.add_argument("--content", type=Path, help="training content folder (default: ../shared/data/content-train)")
    ap.add_argument("--held-out", type=Path, help="held-out content folder (default: ../shared/data/content)")
    ap.add_argument("--size", type=int, default=128, help="stylizer training crop size (and the VAE's style size)")
    ap.add_argument("--steps", type=int, default=800, help="training steps of every stylizer (of the recipe's batch)")
    ap.add_argument("--vae-steps", type=int, default=1000, help="training steps of the VAE")
    ap.add_argument("--pairs", type=int, default=24, help="sampled pairs")
    ap.add_argument("--strengths", type=int, default=11, help="strengths evaluated from 0 to 1")
    ap.add_argument("--stylizer-seed", type=int, default=0,
                    help="seed of the stylizers only (their initial weights and the order of their examples); link "
                         "another --out's vae and samples folders into a new --out to measure the spread over "
                         "stylizer seeds alone (benchmarks/seed_spread.py)")
    ap.add_argument("--variant", action="append", default=[], metavar='NAME="FLAGS"',
                    help="one more net on the samples, trained with these stylizer.py train flags (repeat)")
    ap.add_argument("--skip", default="", help="comma-separated nets to leave out, e.g. mix")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="run folders and results")
    ap.add_argument("--figure", type=Path, help="the sweep figure (default: OUT/sweeps.png)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    styles, content = default_inputs(args, out)
    timings_path = out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    t0 = time.perf_counter()
    runs = train_all(args, styles, content, out, timings)
    fidelity = sample_fidelity.measure_cached(out / "samples")["summary"]
    results, shown = evaluate(args, styles, out, runs)
    results.update(sample_fidelity=fidelity, train_seconds=timings, total_minutes=(time.perf_counter() - t0) / 60,
                   config={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()})
    iu.atomic_write_json(out / "results.json", results)
    write_figures(args.figure or out / "sweeps.png", out, shown)
    print_tables(results, timings)
    print(json.dumps({k: v for k, v in results.items() if isinstance(v, dict) and "loss_at_0_vs_single" in v}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
