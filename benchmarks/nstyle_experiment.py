"""Eight paintings in one network: does the VAE still give a continuum between every pair of eight styles, does one
stylizer hold all eight ends as well as eight single-style nets, and what does it cost?

    python benchmarks/nstyle_experiment.py                       # the CPU configuration (hours on 2 cores; resumes)
    python benchmarks/nstyle_experiment.py --steps 600 --vae-steps 2000 --out runs/nstyle --record

Trains, at the recommended route's settings (the scripts' defaults) and the CPU demo's sizes (recipes/cpu-demo.toml):
one VAE on the eight paintings and its samples over every pair (28 pairs, each walked `--pairs` / 28 times); eight
single-style nets of --steps steps (the budget B); the eight-style net on those samples (`vae`) and the direct
Gram-mixing net (`mix`: --style eight times, each example a random pair of the paintings at a strength t ~ U(0, 1)
or, for half of them, a single painting) at 8B, the compute of the eight nets they replace, and at B. Content: the
32 photos of ../shared/data/content-train and content-train-more; held-out photos: ../shared/data/content.

Measures: the samples (sample_fidelity.measure_styles: per style diversity and endpoint Gram error, per pair
Spearman and largest step); per style, the multi-style net's loss at that style alone (content + style against the
painting, on the held-out photos) over its own single-style net's; per measured pair (four disjoint pairs), the
Spearman of strength against the style loss to the first painting; a three-style mixture through `stylize
--weights NAME=W,...`, whose style loss to each of its three paintings must be below that of every other style's
end; the training step's cost against the single-style step (one process, alternating blocks); the parameters each
added style adds. Writes OUT/results.json, the figures (--figures, default docs/results/) and, with --record, the
figures of the 8B VAE-route net to docs/results/nstyle.json; the last line printed is the JSON summary. Targets: at
8B every end <= 1.10x its single-style net, Spearman >= 0.95 on every measured pair, step cost <= 1.05x, <= 2% of
the network's parameters per added style.
"""
from __future__ import annotations

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

import image_utilities as iu  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
# The three paintings of styles/ and five of styles-extra chosen for palettes and strokes unlike each other and
# unlike those three: the blue-and-white print of The Great Wave, Rain Princess's hot knife-painted colours,
# Mondrian's grid, En campo gris's white lines on black and the red chalk of Woman in a peasant dress.
PAINTINGS = [SHARED / "styles" / f for f in ("starry_night.jpg", "the_scream.jpg", "shipwreck.jpg")] + \
    [SHARED / "styles-extra" / f for f in ("wave.jpg", "rain_princess.jpg", "mondrian.jpg", "en_campo_gris.jpg",
                                             "woman_in_peasant_dress.jpg")]
TRAIN = [SHARED / "content-train", SHARED / "content-train-more"]
MEASURED_PAIRS = [(0, 1), (2, 3), (4, 5), (6, 7)]
MIXTURE = (0, 3, 4)  # Starry Night, The Great Wave, Rain Princess
TARGETS = {"worst_end_ratio": 1.10, "min_pair_spearman": 0.95, "step_cost_vs_single": 1.05,
           "params_growth_per_style": 0.02}


class Stages:
    """Run each training stage once (a finished run folder resumes at once) and keep the seconds it took."""

    def __init__(self, out: Path):
        self.path = out / "timings.json"
        self.seconds = json.loads(self.path.read_text()) if self.path.exists() else {}

    def run(self, name: str, fn):
        t0 = time.perf_counter()
        code = fn()
        if code != 0:
            raise SystemExit(f"{name} failed with exit code {code}")
        self.seconds.setdefault(name, time.perf_counter() - t0)
        iu.atomic_write_json(self.path, self.seconds)


def train_all(args, styles, content, stages: Stages) -> dict:
    """The VAE, its samples and every stylizer; returns {net name: run folder}."""
    import style_sampler
    import stylizer
    import vae_keras

    out = args.out
    vae_args = ["train", "--recipe", "cpu-demo", "--run-dir", str(out / "vae"), "--steps", str(args.vae_steps),
                "--style-size", str(args.size)]
    stages.run("vae", lambda: vae_keras.main(vae_args + [a for s in styles for a in ("--style", str(s))]))
    stages.run("samples", lambda: style_sampler.main(["--recipe", "cpu-demo", "--vae", str(out / "vae"), "--out",
                                                      str(out / "samples"), "--pairs", str(args.pairs)]))
    common = ["--recipe", "cpu-demo", "--content", str(content), "--size", str(args.size), "--log-every", "50",
              *shlex.split(args.train_args)]
    every = [a for s in styles for a in ("--style", str(s))]
    runs = {f"single_{Path(s).stem}": (["--style", str(s)], args.steps) for s in styles}
    for budget, steps in (("8B", 8 * args.steps), ("B", args.steps)):
        runs[f"vae_{budget}"] = (["--samples", str(out / "samples")], steps)
        runs[f"mix_{budget}"] = (every, steps)
    for name, (source, steps) in runs.items():
        if name in args.skip:
            continue
        stages.run(name, lambda source=source, steps=steps, name=name: stylizer.main(
            ["train", *source, "--run-dir", str(out / name), "--steps", str(steps), *common,
             "--checkpoint-every", str(max(100, steps // 8)), "--set", f"snapshot_every={steps}"]))
    return {name: out / name for name in runs if name not in args.skip}


def held_out(size: int, folder: Path) -> np.ndarray:
    return np.stack([iu.center_crop(iu.resize_short_side(iu.load_image(f), size), size)
                     for f in iu.list_images(folder)])


def losses(net, images, weights, target, config, vgg, layers):
    """(content + style loss with the training weights, style loss) of the net's outputs against `target` Grams,
    means over the images; and the outputs."""
    import tensorflow as tf

    from perceptual import content_loss, gram_matrix, style_loss

    out = np.asarray(net({"image": images, "weights": np.repeat(np.asarray(weights, np.float32)[None],
                                                                len(images), 0)}, training=False))
    fo, fc = vgg(out), vgg(images)
    c = content_loss(fo[config.content_layer], fc[config.content_layer])
    s = style_loss({n: gram_matrix(fo[n]) for n in layers}, target, layers)
    return float(tf.reduce_mean(config.content_weight * c + config.style_weight * s)), float(tf.reduce_mean(s)), out


def evaluate(args, styles, runs: dict) -> dict:
    """Per multi-style net: its ends against the single-style nets, its measured pairs' Spearman, its mixture."""
    import stylizer_eval as E
    from perceptual import vgg_features
    from stylizer_data import STYLE_LAYERS, style_image_grams
    from stylizer_run import load_stylizer

    layers = list(STYLE_LAYERS)
    nets = {name: load_stylizer(path) for name, path in runs.items()}
    config = nets[f"single_{Path(styles[0]).stem}"][1]
    vgg = vgg_features(sorted(set(layers) | {config.content_layer}), name="nstyle_vgg")
    targets = style_image_grams(styles, args.size, vgg, layers)
    images = held_out(args.size, args.held_out)
    single = {k: losses(nets[f"single_{Path(s).stem}"][0], images, [1.0], targets[k], config, vgg, layers)[0]
              for k, s in enumerate(styles)}
    eye, ts = np.eye(len(styles), dtype=np.float32), np.linspace(0.0, 1.0, 11)
    results = {"single_loss": {Path(s).stem: single[k] for k, s in enumerate(styles)}}
    for name in (n for n in nets if not n.startswith("single_")):
        net = nets[name][0]
        ends = {Path(s).stem: losses(net, images, eye[k], targets[k], config, vgg, layers)[0] / single[k]
                for k, s in enumerate(styles)}
        pairs = {}
        for a, b in MEASURED_PAIRS:
            to_a = [losses(net, images, (1 - t) * eye[a] + t * eye[b], targets[a], config, vgg, layers)[1]
                    for t in ts]
            pairs[f"{Path(styles[a]).stem}-{Path(styles[b]).stem}"] = E.spearman(ts, to_a)
        results[name] = {"end_ratio": ends, "mean_end_ratio": float(np.mean(list(ends.values()))),
                         "worst_end_ratio": float(max(ends.values())), "pair_spearman": pairs,
                         "min_pair_spearman": float(min(pairs.values())),
                         "mixture": mixture(args, runs[name], styles, net, images, targets, config, vgg, layers)}
    return results


def mixture(args, run: Path, styles, net, images, targets, config, vgg, layers) -> dict:
    """A three-style mixture made by `stylize --weights NAME=W,...` on the held-out photos: its style loss to each
    of its paintings against that of every other style's end (which must all be larger)."""
    import tensorflow as tf

    import stylizer
    from perceptual import gram_matrix, style_loss

    names = [Path(s).stem for s in styles]
    weights = ",".join(f"{names[k]}={w:.6f}" for k, w in zip(MIXTURE, (0.333333, 0.333333, 0.333334)))
    folder, out = args.out / "photos", args.out / "mixture" / run.name
    for k, image in enumerate(images):
        iu.save_image(folder / f"photo_{k}.png", image)
    assert stylizer.main(["stylize", "--run-dir", str(run), str(folder), "--weights", weights, "--out", str(out),
                          "--overwrite"]) == 0
    mixed = np.stack([iu.load_image(out / f"photo_{k}.png") for k in range(len(images))])

    def style_to(outputs, k):
        feats = vgg(tf.constant(outputs))
        return float(tf.reduce_mean(style_loss({n: gram_matrix(feats[n]) for n in layers}, targets[k], layers)))

    ends = {d: losses(net, images, np.eye(len(styles))[d], targets[d], config, vgg, layers)[2]
            for d in range(len(styles)) if d not in MIXTURE}
    rows = {}
    for k in MIXTURE:
        others = {names[d]: style_to(out_d, k) for d, out_d in ends.items()}
        rows[names[k]] = {"mixture": style_to(mixed, k), "closest_other_end": min(others.values()),
                          "below_every_other_end": style_to(mixed, k) < min(others.values())}
    return {"weights": weights, "per_style": rows, "met": all(r["below_every_other_end"] for r in rows.values())}


def costs(styles: int, size: int, batch: int, blocks: int = 5, steps: int = 4) -> dict:
    """The N-style (cin) training step's seconds over the single-style step's, timed in one process in alternating
    blocks, and the parameters each added style adds, as a share of the single-style net's."""
    import speed
    from stylizer_net import build_stylizer

    runners = {"single": speed.stylizer_step("none", 1, batch, size, precision="mixed_bfloat16"),
               "multi": speed.stylizer_step("cin", styles, batch, size, precision="mixed_bfloat16")}
    content = np.random.default_rng(0).random((batch, size, size, 3)).astype(np.float32)
    seconds = {k: [] for k in runners}
    for run in runners.values():
        run(content), run(content)
    for _ in range(blocks):
        for name, run in runners.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                run(content)
            seconds[name].append((time.perf_counter() - t0) / steps)
    single, multi = build_stylizer(1, "none").count_params(), build_stylizer(styles, "cin").count_params()
    return {"step_seconds_single": float(np.median(seconds["single"])),
            "step_seconds_multi": float(np.median(seconds["multi"])),
            "step_cost_vs_single": float(np.median(seconds["multi"]) / np.median(seconds["single"])),
            "params_single": single, "params_multi": multi,
            "params_growth_per_style": (multi - single) / (styles - 1) / single}


def write_figures(folder: Path, args, styles, runs: dict):
    """styles.png: the held-out photos (rows) through the 8B VAE-route net at each painting alone (columns);
    sweep.png: the first measured pair's strength sweep by the 8B VAE-route and mixing nets; samples.png: the VAE's
    samples along three pair walks."""
    import sample_folder
    from stylizer_apply import stylize_array
    from stylizer_run import load_stylizer

    names = [Path(s).stem for s in styles]
    images = held_out(args.size, args.held_out)[:2]
    net = load_stylizer(runs["vae_8B"])[0]
    eye, side = np.eye(len(styles), dtype=np.float32), 160
    big = lambda im: iu.resize(im, side, side)  # noqa: E731
    tiles = [iu.put_label(big(im), label) for photo in images
             for im, label in [(photo, "photo")] + [(stylize_array(net, photo, eye[k]), names[k])
                                                     for k in range(len(styles))]]
    iu.save_image(folder / "nstyle_styles.png", iu.image_grid(tiles, cols=len(styles) + 1))
    a, b = MEASURED_PAIRS[0]
    ts = np.linspace(0.0, 1.0, 9)
    rows = []
    for name in ("vae_8B", "mix_8B"):
        if name in runs:
            net = load_stylizer(runs[name])[0]
            rows += [iu.put_label(big(stylize_array(net, images[0], (1 - t) * eye[a] + t * eye[b])),
                                  f"{name} t={t:.2f}") for t in ts]
    iu.save_image(folder / "nstyle_sweep.png", iu.image_grid(rows, cols=len(ts)))
    entries = sample_folder.read_manifest(args.out / "samples")
    walks = sorted({e["pair"] for e in entries})
    chosen = [next(p for p in walks if next(e for e in entries if e["pair"] == p)["styles"] == [names[i], names[j]])
              for i, j in ((0, 1), (3, 5), (6, 7))]
    tiles = [iu.put_label(big(iu.load_image(args.out / "samples" / e["file"])),
                          f"{'-'.join(e['styles'])} t={e['t']:.2f}")
             for p in chosen for e in sorted((e for e in entries if e["pair"] == p), key=lambda e: e["t"])]
    iu.save_image(folder / "nstyle_samples.png", iu.image_grid(tiles, cols=len(tiles) // len(chosen)))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=iu.HelpFormatter)
    from quality import photo_arguments

    photo_arguments(ap, "the eight named in this file")
    ap.add_argument("--size", type=int, default=128, help="training crop size of every stylizer")
    ap.add_argument("--steps", type=int, default=600, help="the budget B: steps of each single-style net (the CPU "
                                                           "demo's: recipes/cpu-demo.toml)")
    ap.add_argument("--vae-steps", type=int, default=2000, help="steps of the eight-style VAE")
    ap.add_argument("--pairs", type=int, default=56, help="sampled pair walks (cycling through the 28 pairs)")
    ap.add_argument("--train-args", default="", help="more stylizer.py train flags for every net (quoted)")
    ap.add_argument("--skip", default="", help="comma-separated nets not to train, e.g. mix_B")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "nstyle", help="run folders and results")
    ap.add_argument("--figures", type=Path, default=ROOT / "docs" / "results", help="folder for the figures")
    ap.add_argument("--record", action="store_true", help="write docs/results/nstyle.json from this run")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.skip = set(filter(None, args.skip.split(",")))
    needed = {"vae_8B"} | {n for n in args.skip if n.startswith("single_")}
    if args.skip & needed:
        return iu.fail(f"--skip {','.join(sorted(args.skip & needed))}: the evaluation needs the single-style nets "
                       "and vae_8B")
    styles = args.style or PAINTINGS
    missing = [p for p in [*styles, *(args.content or TRAIN), args.held_out] if not Path(p).exists()]
    if missing:
        return iu.fail(f"{missing[0]}: not found (the defaults are in ../shared/data)")
    from quality import training_folder
    from sample_fidelity import measure_styles

    t0 = time.perf_counter()
    stages = Stages(args.out)
    runs = train_all(args, styles, training_folder(args.content or TRAIN, args.out), stages)
    fidelity_path = args.out / "fidelity.json"
    if not fidelity_path.exists():
        iu.atomic_write_json(fidelity_path, measure_styles(args.out / "samples"))
    fidelity = json.loads(fidelity_path.read_text())
    results = {"evaluation": evaluate(args, styles, runs), "costs": costs(len(styles), args.size, 4),
               "samples": fidelity, "train_seconds": stages.seconds, "styles": [str(s) for s in styles],
               "steps": args.steps, "size": args.size}
    iu.atomic_write_json(args.out / "results.json", results)
    write_figures(args.figures, args, styles, runs)
    summary = summarize(results)
    print_tables(results, summary)
    if args.record:
        from records import write_record

        write_record("nstyle", summary, "benchmarks/nstyle_experiment.py", argv, (time.perf_counter() - t0) / 60)
    print(json.dumps(summary))
    return 0


def summarize(results: dict) -> dict:
    """The docs' keys, for the 8B VAE-route net (and the same for the others, under their names)."""
    ev, costs_ = results["evaluation"], results["costs"]
    main_net = ev["vae_8B"]
    summary = {"mean_end_ratio": main_net["mean_end_ratio"], "worst_end_ratio": main_net["worst_end_ratio"],
               "min_pair_spearman": main_net["min_pair_spearman"],
               "step_cost_vs_single": costs_["step_cost_vs_single"],
               "params_growth_per_style": costs_["params_growth_per_style"],
               "mixture_below_other_ends": main_net["mixture"]["met"],
               "samples": results["samples"]["summary"],
               "nets": {name: {k: r[k] for k in ("mean_end_ratio", "worst_end_ratio", "min_pair_spearman")}
                        for name, r in ev.items() if name != "single_loss"}}
    summary["targets_met"] = {k: (summary[k] >= v if k == "min_pair_spearman" else summary[k] <= v)
                              for k, v in TARGETS.items()}
    return summary


def print_tables(results: dict, summary: dict):
    ev = results["evaluation"]
    names = list(ev["single_loss"])
    nets = [n for n in ev if n != "single_loss"]
    print("\n| style | " + " | ".join(nets) + " |\n|---|" + "---|" * len(nets))
    for s in names:
        print(f"| {s} | " + " | ".join(f"{ev[n]['end_ratio'][s]:.2f}x" for n in nets) + " |")
    print("| mean / worst | " + " | ".join(f"{ev[n]['mean_end_ratio']:.2f}x / {ev[n]['worst_end_ratio']:.2f}x"
                                           for n in nets) + " |")
    print("| min pair Spearman | " + " | ".join(f"{ev[n]['min_pair_spearman']:.3f}" for n in nets) + " |")
    print("| mixture below other ends | " + " | ".join(str(ev[n]["mixture"]["met"]) for n in nets) + " |")
    c = results["costs"]
    print(f"\nstep cost {c['step_cost_vs_single']:.3f}x the single-style step; "
          f"{100 * c['params_growth_per_style']:.2f}% of the parameters per added style")
    for k, met in summary["targets_met"].items():
        print(f"{k}: {summary[k]:.3f} (target {TARGETS[k]}): {'MET' if met else 'MISSED'}")


if __name__ == "__main__":
    sys.exit(main())
