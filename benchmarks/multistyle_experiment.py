"""Does one network for a continuum of styles cost quality, and do the VAE's samples help or hurt? Trains, with the
same step budget, content and seed: single-style nets for A and for B; the direct Gram-mixing net (no VAE); two
real-crop controls (Gram targets of random crops of A and B at the VAE's crop size: strengths 0/1 only, and mixed
by t); and nets on the samples of each VAE variant (for texture-decoder variants, --draw-at-size, also on samples
drawn at the stylizer's --size: `style_sampler.py --sample-size`; for --mean-targets variants, also nets whose target is
the mean Gram of the samples at each t, and the crop control likewise; with --anchor-ends, twins of those nets whose
pure samples' mean is moved onto the painting, and with --end-share F, twins of the mixing and mean-target nets that
draw a share F of their examples at strength 0 or 1). On held-out photographs it compares each
multi-style net at strength 0 and 1 with the single-style net of that style (content + style loss against the real
painting) and measures how monotonically the output moves from A to B (Spearman of strength vs style loss to A).
Each VAE's samples are measured first with sample_fidelity.py.

    python benchmarks/multistyle_experiment.py                      # the CPU configuration (over an hour here)
    python benchmarks/multistyle_experiment.py --long-steps 2000    # plus a longer single-style net vs Gatys
    python benchmarks/multistyle_experiment.py --size 256 --steps 20000 --vae-size 224 --vae-steps 20000 \\
        --content res/coco/train2014/train2014                         # the full configuration, for a GPU

Defaults: styles starry_night and the_scream from ../shared/data/styles (built-in styles if absent); training
content: the 12 photographs of ../shared/data/content-train (built-in content if absent); held-out content:
../shared/data/content. Runs live under runs/experiment/ and resume if interrupted. Writes docs/multistyle_sweeps.png
and runs/experiment/results.json. Targets: loss at strengths 0 and 1 <= 1.10x the single-style nets; Spearman >= 0.95.
"""
import argparse
import json
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
import stylizer_run as R  # noqa: E402
import stylizer_apply as A  # noqa: E402
import stylizer_data as D  # noqa: E402
import stylizer_eval as E  # noqa: E402
import stylizer_net as N  # noqa: E402
import vae_keras as V  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
DEFAULT_OUT = ROOT / "runs" / "experiment"
# VAE variants: the gram VAE, the continuum VAE (issue 12), the fourth session's make demo VAE recipe and the texture
# decoder. Same steps, crops and seed.
VAE_VARIANTS = {
    "gram": [],
    "continuum": ["--noise-channels", "4", "--path-weight", "1", "--endpoint-weight", "1", "--diversity-weight", "10"],
}
# The fourth session's make demo VAE: the continuum terms with a cosine learning rate, ten times the layout term, in
# bfloat16.
VAE_VARIANTS["demo"] = [*VAE_VARIANTS["continuum"], "--lr-schedule", "cosine", "--feature-weight", "1",
                        "--precision", "mixed_bfloat16"]
# make demo's VAE since the fifth session: the texture decoder (the noise image sets the layout, z the statistics; no
# layout term) with relu4_3 among the texture layers.
VAE_VARIANTS["texture"] = [*VAE_VARIANTS["continuum"], "--lr-schedule", "cosine", "--feature-weight", "0",
                           "--decoder", "texture", "--texture-layers", "relu1_2,relu2_2,relu3_3,relu4_3",
                           "--precision", "mixed_bfloat16"]
# The same without relu4_3 (the default texture layers; make demo's VAE since the sixth session): relu4_3 costs a
# fourth VGG block per decode.
VAE_VARIANTS["texture-relu3"] = [*VAE_VARIANTS["continuum"], "--lr-schedule", "cosine", "--feature-weight", "0",
                                 "--decoder", "texture", "--precision", "mixed_bfloat16"]


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
    c = content_loss(fo["relu2_2"], fc["relu2_2"])
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--style", action="append", default=[], help="the two styles (default: Starry Night, Scream)")
    ap.add_argument("--content", type=Path, help="training content folder (default: ../shared/data/content-train)")
    ap.add_argument("--held-out", type=Path, help="held-out content folder (default: ../shared/data/content)")
    ap.add_argument("--size", type=int, default=128, help="stylizer training crop size")
    ap.add_argument("--steps", type=int, default=400, help="training steps of every stylizer")
    ap.add_argument("--batch-size", type=int, default=4, help="stylizer batch size")
    ap.add_argument("--vae-size", type=int, default=64, help="VAE crop size")
    ap.add_argument("--vae-steps", type=int, default=1000, help="training steps of every VAE")
    ap.add_argument("--vaes", default=",".join(VAE_VARIANTS), help="VAE variants to compare")
    ap.add_argument("--pairs", type=int, default=24, help="sampled pairs per VAE")
    ap.add_argument("--strengths", type=int, default=11, help="strengths evaluated from 0 to 1")
    ap.add_argument("--stylizer-seed", type=int, default=0,
                    help="seed of the stylizers only (their initial weights and the order of their examples); the "
                         "VAEs and samples keep seed 0. Link another --out's vae_* and samples_* folders into a new "
                         "--out to measure the spread over stylizer seeds alone (benchmarks/seed_spread.py)")
    ap.add_argument("--skip", default="", help="comma-separated stylizer runs to leave out, e.g. crops_ends")
    ap.add_argument("--draw-at-size", default="texture,texture-relu3", metavar="NAMES",
                    help="comma-separated texture-decoder VAE variants whose samples are also drawn at the "
                         "stylizer's --size (style_sampler --sample-size), with a net trained on them")
    ap.add_argument("--mean-targets", default="texture,texture-relu3", metavar="NAMES",
                    help="comma-separated VAE variants whose sample sets also train a net with --style-targets mean "
                         "(each example's target the mean Gram of the samples at its t); adds crops_ends_mean")
    ap.add_argument("--anchor-ends", action="store_true",
                    help="also train each --mean-targets net with stylizer.py --anchor-ends (its pure samples' mean "
                         "moved onto the painting): one more net per mean-target net")
    ap.add_argument("--end-share", type=float, default=0.0, metavar="F",
                    help="also train the mixing net and each --mean-targets net (and its --anchor-ends twin) with "
                         "stylizer.py --end-share F (a share F of the examples at strength 0 or 1); 0: not")
    ap.add_argument("--cin", action="store_true", help="also train a cin net on the last VAE's samples")
    ap.add_argument("--cin-twins", default="", metavar="RUNS",
                    help="comma-separated stylizer runs of this experiment to train again with --conditioning cin "
                         "(conditional instance norm instead of style planes), as RUN_cin")
    ap.add_argument("--long-steps", type=int, default=0, help="also train single A this long (bf16) vs Gatys")
    ap.add_argument("--gatys-iters", type=int, default=300, help="Gatys optimisation iterations per photo")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="run folders and results")
    ap.add_argument("--figure", type=Path,
                    help="the sweep figure (the continuum figure goes next to it); default: "
                         "docs/multistyle_sweeps.png with the default --out, else OUT/sweeps.png")
    args = ap.parse_args(argv)
    if not 0.0 <= args.end_share <= 1.0:
        return iu.fail(f"--end-share {args.end_share:g}: a share, between 0 and 1")
    named = {flag: list(filter(None, value.split(","))) for flag, value in
             (("--vaes", args.vaes), ("--draw-at-size", args.draw_at_size), ("--mean-targets", args.mean_targets))}
    vaes = named["--vaes"]
    unknown = [f"{flag} {n}" for flag, names in named.items() for n in names if n not in VAE_VARIANTS]
    if unknown:
        return iu.fail(f"unknown VAE variants ({', '.join(unknown)}): have {', '.join(VAE_VARIANTS)}")
    # Variants of these lists that --vaes leaves out are not trained, so not drawn either
    at_size = [n for n in named["--draw-at-size"] if n in vaes]
    mean_targets = [n for n in named["--mean-targets"] if n in vaes]
    seed_decoders = [n for n in at_size if "texture" not in VAE_VARIANTS[n]]
    if seed_decoders:
        return iu.fail(f"--draw-at-size {','.join(seed_decoders)}: only texture-decoder variants draw at another size")
    if args.size == args.vae_size:
        at_size = []  # the samples are at the stylizer's size already

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.figure is None:  # another --out is another experiment: it leaves the docs' figures alone
        args.figure = ROOT / "docs" / "multistyle_sweeps.png" if out.resolve() == DEFAULT_OUT else out / "sweeps.png"
    styles, content = default_inputs(args, out)
    t_start = time.perf_counter()
    timings, fidelity = {}, {}

    # Wall-clock seconds of each stage, kept in timings.json, so a resumed experiment reports the time a stage took
    # when it ran, not the instant it takes to find it finished.
    timings_path = out / "timings.json"
    timings.update(json.loads(timings_path.read_text()) if timings_path.exists() else {})

    def timed(name, fn, folder=None):
        t0 = time.perf_counter()
        code = fn()
        if code != 0:
            raise SystemExit(f"{name} failed with exit code {code}")
        if name not in timings:
            timings[name] = linked_timing(folder, name) or time.perf_counter() - t0
            iu.atomic_write_json(timings_path, timings)

    # 1. A VAE and its samples per variant, and the samples' own measures.
    sample_sets = {}  # samples folder key -> (its VAE variant, sampler arguments beyond --vae and --out)
    for name in vaes:
        vae_dir, samples_dir = out / f"vae_{name}", out / f"samples_{name}"
        vae_cmd = ["train", "--run-dir", str(vae_dir), "--size", str(args.vae_size), "--style-size", str(args.size),
                   "--latent-dim", "32", "--steps", str(args.vae_steps), "--batch-size", "16", "--lr", "1e-3",
                   "--beta", "0.02", "--recon", "gram", "--log-every", "250", "--snapshot-every", "250",
                   "--encode-crops", "256", *VAE_VARIANTS[name]]
        for s in styles:
            vae_cmd += ["--style", s]
        timed(f"vae_{name}", lambda cmd=vae_cmd: V.main(cmd), vae_dir)
        sample_sets[name] = (name, [])
        if name in at_size:
            sample_sets[f"{name}_{args.size}px"] = (name, ["--sample-size", str(args.size)])
    for key, (name, extra) in sample_sets.items():
        samples_dir = out / f"samples_{key}"
        timed(f"sampler_{key}", lambda v=out / f"vae_{name}", s=samples_dir, e=extra: style_sampler.main(
            ["--vae", str(v), "--out", str(s), "--pairs", str(args.pairs), "--points", "9", *e]), samples_dir)
        fidelity[key] = sample_fidelity.measure_cached(samples_dir)["summary"]

    # 2. Stylizers, one budget for all
    common = ["--content", str(content), "--size", str(args.size), "--steps", str(args.steps), "--batch-size",
              str(args.batch_size), "--seed", str(args.stylizer_seed), "--log-every", "50", "--snapshot-every",
              str(args.steps), "--checkpoint-every", "100"]
    both = ["--style", styles[0], "--style", styles[1], "--conditioning", "channels"]
    runs = {
        "single_A": ["--style", styles[0], "--conditioning", "none"],
        "single_B": ["--style", styles[1], "--conditioning", "none"],
        "mix_channels": both,
        "crops_ends": [*both, "--style-crop-size", str(args.vae_size), "--strength-draw", "ends"],
        "crops_mixed": [*both, "--style-crop-size", str(args.vae_size)],
    }
    vae_of = {}  # stylizer run -> the VAE variant its samples come from
    for key, (name, _) in sample_sets.items():
        runs[f"vae_{key}_channels"] = ["--samples", str(out / f"samples_{key}"), "--conditioning", "channels"]
        vae_of[f"vae_{key}_channels"] = name
        if name in mean_targets:
            runs[f"vae_{key}_mean"] = [*runs[f"vae_{key}_channels"], "--style-targets", "mean"]
            vae_of[f"vae_{key}_mean"] = name
    if mean_targets:  # the control: the mean Gram of real crops at each end, without the noise of single crops
        runs["crops_ends_mean"] = [*runs["crops_ends"], "--style-targets", "mean"]
    mean_runs = [r for r in runs if r.startswith("vae_") and r.endswith("_mean")]
    anchored = [f"{name}_anchored" for name in mean_runs] if args.anchor_ends else []
    for name in anchored:  # the VAE's way between the paintings themselves
        runs[name] = [*runs[name.removesuffix("_anchored")], "--anchor-ends"]
        vae_of[name] = vae_of[name.removesuffix("_anchored")]
    ends = f"_ends{100 * args.end_share:g}"  # the suffix of the --end-share twins
    if args.end_share:  # more of the training at the ends, where the nets are compared with single-style nets
        for name in ["mix_channels", *mean_runs, *anchored]:
            runs[f"{name}{ends}"] = [*runs[name], "--end-share", str(args.end_share)]
            if name in vae_of:
                vae_of[f"{name}{ends}"] = vae_of[name]
    if args.cin:
        runs[f"vae_{vaes[-1]}_cin"] = ["--samples", str(out / f"samples_{vaes[-1]}"), "--conditioning", "cin"]
        vae_of[f"vae_{vaes[-1]}_cin"] = vaes[-1]
    twins = list(filter(None, args.cin_twins.split(",")))
    unknown = [name for name in twins if name not in runs or runs[name][-1] == "none"]
    if unknown:
        return iu.fail(f"--cin-twins {','.join(unknown)}: not a multi-style run of this experiment")
    for name in twins:  # the last --conditioning wins
        runs[f"{name}_cin"] = [*runs[name], "--conditioning", "cin"]
        if name in vae_of:
            vae_of[f"{name}_cin"] = vae_of[name]
    for name in filter(None, args.skip.split(",")):
        runs.pop(name)
    for name, extra in runs.items():
        timed(name, lambda name=name, extra=extra: S.main(["train", "--run-dir", str(out / name), *extra, *common]),
              out / name)

    # 3. Evaluation on held-out content against the real style images
    from perceptual import vgg_features
    layers = list(D.STYLE_LAYERS)
    vgg = vgg_features(sorted(set(layers) | {"relu2_2"}), name="experiment_vgg")
    targets = D.style_image_grams(styles, args.size, vgg, layers)
    images = np.stack(held_out_content(args.size, args.held_out))
    nets = {name: R.load_stylizer(out / name) for name in runs}
    config = nets["single_A"][1]  # the loss weights, which every net shares
    one = np.ones(1, np.float32)
    single = {0: losses_against(nets["single_A"][0], images, one, targets[0], config, vgg, layers)[0],
              1: losses_against(nets["single_B"][0], images, one, targets[1], config, vgg, layers)[0]}
    ts = np.linspace(0.0, 1.0, args.strengths)
    results = {"single_A_loss": single[0], "single_B_loss": single[1], "sample_fidelity": fidelity}
    sweeps = {}
    for name in [n for n in runs if not n.startswith("single")]:
        net = nets[name][0]
        style_to_a, frames, end_loss = [], [], {}
        for t in ts:
            total, s_a, outs = losses_against(net, images, N.strength_weights(2, [t])[0], targets[0], config,
                                              vgg, layers)
            style_to_a.append(s_a)
            frames.append(outs[0])
            if t in (0.0, 1.0):
                end_loss[t] = total if t == 0.0 else image_losses(outs, images, targets[1], config, vgg, layers)[0]
        vae = vae_of.get(name)
        results[name] = {"loss_at_0_vs_single": end_loss[0.0] / single[0],
                         "loss_at_1_vs_single": end_loss[1.0] / single[1],
                         "spearman_strength_vs_style_loss_to_A": E.spearman(ts, style_to_a),
                         "train_seconds": timings[name],
                         "vae_train_seconds": timings.get(f"vae_{vae}") if vae else None}
        sweeps[name] = frames
    results["single_train_seconds"] = {k: timings[k] for k in ("single_A", "single_B")}
    results["vae_train_seconds"] = {k: timings[f"vae_{k}"] for k in vaes}
    if args.long_steps:
        results["long"] = long_configuration(args, styles, content, images, targets, vgg, layers, out, timed,
                                             timings)
    results["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    results["styles"] = styles
    results["total_minutes"] = (time.perf_counter() - t_start) / 60
    iu.atomic_write_json(out / "results.json", results)
    write_figure(args.figure, nets, images, sweeps, ts)
    shown, mixing = continuum_nets(list(sweeps), vae_of, args.size, ends)
    if shown and mixing:
        samples = Path(runs[shown][runs[shown].index("--samples") + 1])
        write_continuum_figure(args.figure.with_name("continuum_vs_mixing.png"), samples, shown, mixing, sweeps,
                               ts)
    else:
        print("no continuum figure: it needs a net on VAE samples and a mixing net, and one of them was skipped")
    print_tables(results, sweeps, {key: name for key, (name, _) in sample_sets.items()}, timings)
    print(f"\nwrote {out / 'results.json'} and {args.figure}; {results['total_minutes']:.1f} minutes in all")
    return 0


def linked_timing(folder: Path | None, stage: str) -> float | None:
    """The seconds a stage took in the experiment whose folder `folder` links to (another --out's VAE or samples,
    linked in to measure stylizer seeds), from that experiment's timings.json: here it only resumed. None when the
    folder is not a link or the other experiment has no record of the stage."""
    if folder is None or not folder.is_symlink():
        return None
    theirs = folder.resolve().parent / "timings.json"
    return json.loads(theirs.read_text()).get(stage) if theirs.exists() else None


def continuum_nets(trained: list[str], vae_of: dict, size: int, ends: str) -> tuple[str | None, str | None]:
    """The two nets of the continuum figure, None where none was trained: make demo's route (texture-decoder
    samples at the stylizer's size, mean targets anchored on the paintings, the --end-share twin, whose run name
    holds `ends`), or the nearest route among `trained` (the nets on VAE samples: `vae_of`'s keys); and next to it the
    mixing net trained with the same share at the ends, or the plain one."""
    route = f"vae_texture-relu3_{size}px_mean"
    candidates = [f"{route}_anchored{ends}", f"{route}_anchored", route, f"vae_texture_{size}px_mean",
                  "vae_texture_channels", *[r for r in trained if r in vae_of][::-1]]
    shown = next((r for r in candidates if r in trained), None)
    share = ends if shown and ends in shown else ""
    cin = "_cin" if shown and shown.endswith("_cin") else ""
    mixing = next((m for m in (f"mix_channels{share}{cin}", f"mix_channels{share}", "mix_channels") if m in trained),
                  None)
    return shown, mixing


def long_configuration(args, styles, content, images, targets, vgg, layers, out: Path, timed, timings) -> dict:
    """A single-style net trained --long-steps in bfloat16, against Gatys et al. 2016 optimisation of each held-out
    photo with the same VGG losses: the absolute quality a user can expect, as losses relative to Gatys. `timed`
    and `timings`: main's, so a resumed experiment reports the training time of the run that trained it."""
    name = "single_A_long"
    timed(name, lambda: S.main(["train", "--run-dir", str(out / name), "--style", styles[0], "--conditioning", "none",
                                "--content", str(content), "--size", str(args.size), "--steps", str(args.long_steps),
                                "--batch-size", str(args.batch_size), "--precision", "mixed_bfloat16",
                                "--seed", str(args.stylizer_seed),
                                "--log-every", "100", "--snapshot-every", str(args.long_steps),
                                "--checkpoint-every", "250"]))
    seconds = timings[name]
    net, config, _ = R.load_stylizer(out / name)
    style = iu.resize_short_side(iu.load_image(styles[0]), args.size)
    net_total, net_style, _ = losses_against(net, images, np.ones(1, np.float32), targets[0], config, vgg, layers)
    gatys = []
    for image in images:
        result, _ = E.optimize_image(image, [style], [1.0], args.gatys_iters, config.content_weight,
                                     config.style_weight, config.tv_weight, log_every=args.gatys_iters)
        gatys.append(result)
    gatys_total, gatys_style = image_losses(np.stack(gatys), images, targets[0], config, vgg, layers)
    return {"steps": args.long_steps, "train_seconds": seconds, "gatys_iters": args.gatys_iters,
            "net_loss": net_total, "gatys_loss": gatys_total, "net_style_loss": net_style,
            "gatys_style_loss": gatys_style, "loss_vs_gatys": net_total / gatys_total,
            "style_loss_vs_gatys": net_style / gatys_style}


def write_figure(path: Path, nets, images, sweeps, ts):
    """Methods (rows) x strength (columns) on the first held-out image, after the single-style nets."""
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
    iu.save_image(path, iu.resize_max_side(grid, 1200))


def write_continuum_figure(path: Path, folder: Path, net: str, mixing: str, sweeps, ts):
    """For one pair of styles: the VAE's sampled continuum (first pairs of the sample folder, t = 0 ... 1) over the
    sweeps of `net`, trained on those samples, and of the direct Gram-mixing net `mixing`, on the first held-out
    photo."""
    entries = sample_folder.read_manifest(folder)
    rows, captions = [], []
    for p in (0, 1):
        pair = sorted((e for e in entries if e["pair"] == p), key=lambda e: e["t"])
        rows.append([iu.resize(iu.load_image(folder / e["file"]), 128, 128) for e in pair])
        captions.append([f"VAE pair {p} t={e['t']:.2f}" for e in pair])
    size, cols = 128, len(rows[0])
    for name in (net, mixing):
        picks = np.linspace(0, len(ts) - 1, cols).round().astype(int)
        rows.append([iu.resize(sweeps[name][i], size, size) for i in picks])
        captions.append([f"{name} t={ts[i]:.2f}" for i in picks])
    grid = iu.image_grid([im for r in rows for im in r], cols=cols, captions=[c for r in captions for c in r])
    iu.save_image(path, iu.resize_max_side(grid, 1400))


def print_tables(results, sweeps, vaes: dict, timings):
    """The stylizer table, then the sample table: one row per sample folder of `vaes` (folder key -> VAE variant)."""
    print("\n| method | loss at 0 vs single A | loss at 1 vs single B | Spearman(strength, style loss to A) | "
          "train s | VAE train s |\n|---|---|---|---|---|---|")
    for name in sweeps:
        r = results[name]
        vae_s = f"{r['vae_train_seconds']:.0f}" if r["vae_train_seconds"] else "-"
        print(f"| {name} | {r['loss_at_0_vs_single']:.2f}x | {r['loss_at_1_vs_single']:.2f}x | "
              f"{r['spearman_strength_vs_style_loss_to_A']:.3f} | {r['train_seconds']:.0f} | {vae_s} |")
    print(f"| single_A / single_B | 1.00x | 1.00x | - | {timings['single_A']:.0f} / {timings['single_B']:.0f} | - |")
    print("\n| VAE | diversity t=0 / t=1 vs real crops | near-duplicates t=0 / t=1 | endpoint Gram error t=0 / t=1 | "
          "Spearman mean (min) | largest step / mean step (max) | VAE train s |\n|---|---|---|---|---|---|---|")
    for name, vae in vaes.items():
        f = results["sample_fidelity"][name]
        vae_s = results["vae_train_seconds"][vae]
        dups = (f"{f['near_duplicates_t0']:.0%} / {f['near_duplicates_t1']:.0%}" if "near_duplicates_t0" in f
                else "-")
        floor = (f" (real crops {f['gram_error_floor_t0']:.3f} / {f['gram_error_floor_t1']:.3f})"
                 if "gram_error_floor_t0" in f else "")
        print(f"| {name} | {f['diversity_ratio_t0']:.2f}x / {f['diversity_ratio_t1']:.2f}x | {dups} | "
              f"{f['gram_error_t0']:.3f} / {f['gram_error_t1']:.3f}{floor} | {f['spearman_mean']:.3f} "
              f"({f['spearman_min']:.3f}) | {f['step_ratio_max']:.2f} | {f'{vae_s:.0f}' if vae_s else '-'} |")
    if "long" in results:
        r = results["long"]
        print(f"\nlong single-style net ({r['steps']} steps, bf16, {r['train_seconds']:.0f} s) vs Gatys "
              f"({r['gatys_iters']} iterations): loss {r['loss_vs_gatys']:.2f}x, style loss "
              f"{r['style_loss_vs_gatys']:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
