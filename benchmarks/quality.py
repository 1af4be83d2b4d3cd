"""Is the feed-forward net as good as Gatys et al. on photos it never saw? For each painting and budget it trains
the single-style net with the recommended route at the CPU demo's budget (recipes/cpu-demo.toml) on the training
photos, then stylizes the held-out photos and runs Gatys et al. (the same VGG16, losses and weights, started from the
photo) on each of them, and compares per photo: content distance as LPIPS(photo, result), style loss (Gram) to the
painting, and the whole training objective (content + style + total variation, with the run's weights). Each is
reported as the net's value over Gatys's.

    python benchmarks/quality.py                                  # 4 paintings x budgets 600 and 2400 steps
    python benchmarks/quality.py --style ../shared/data/styles/starry_night.jpg --budgets 300 --out runs/q1
    python benchmarks/quality.py --train-args "--recipe my.toml"  # another recipe, in another --out

Defaults: paintings starry_night and the_scream (../shared/data/styles), la_muse and wave (styles-extra); training
photos: the 32 of ../shared/data/content-train and content-train-more; held-out photos: ../shared/data/content,
whole, at the scale the net trained at (shorter side --size, as training resizes its photos before cropping).
Everything resumes: the nets are run folders under OUT, each Gatys result is cached (OUT/gatys/, or --gatys-cache)
by painting, photo, size and loss weights. Writes OUT/results.json (and, with --figure, the side-by-side picture of
the first painting: photo, Gatys, the net at each budget); the last line printed is the JSON summary: per budget
`lpips_vs_gatys`, `style_vs_gatys`, `total_vs_gatys` (means over photos and paintings of the ratios).
"""
from __future__ import annotations

import argparse
import hashlib
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
DEFAULT_STYLES = [SHARED / "styles" / "starry_night.jpg", SHARED / "styles" / "the_scream.jpg",
                  SHARED / "styles-extra" / "la_muse.jpg", SHARED / "styles-extra" / "wave.jpg"]
DEFAULT_TRAIN = [SHARED / "content-train", SHARED / "content-train-more"]
METRICS = ("lpips", "style", "content", "tv", "total")
# Targets, mean over photos and paintings: at the demo's budget, and at four times it.
TARGETS = {"demo": {"lpips_vs_gatys": 1.05, "style_vs_gatys": 1.5}, "4x": {"lpips_vs_gatys": 1.0,
                                                                          "style_vs_gatys": 1.3}}


def training_folder(folders, out: Path) -> Path:
    """One folder of links to every image of `folders` (the stylizer reads one content folder)."""
    target = out / "content_train"
    iu.make_dirs(target)
    for folder in folders:
        for f in iu.list_images(folder):
            link = target / f"{Path(folder).name}__{f.name}"
            if not link.exists():
                link.symlink_to(f.resolve())
    return target


def losses(images, photo, target_grams, config, vgg, lpips) -> dict:
    """Per image of `images` (a batch of results for one `photo`): LPIPS to the photo, style, content, TV and the
    weighted total, as the stylizer's training objective computes them."""
    import tensorflow as tf

    from perceptual import content_loss, gram_matrix, style_loss, total_variation_loss
    from stylizer_data import STYLE_LAYERS

    images = tf.constant(np.asarray(images, np.float32))
    photos = tf.repeat(tf.constant(photo[None], tf.float32), len(images), 0)
    fo, fc = vgg(images), vgg(photos)
    c = content_loss(fo[config.content_layer], fc[config.content_layer])
    s = style_loss({n: gram_matrix(fo[n]) for n in STYLE_LAYERS}, target_grams, STYLE_LAYERS)
    tv = total_variation_loss(images)
    total = config.content_weight * c + config.style_weight * s + config.tv_weight * tv
    d = lpips(images, photos)
    return {k: np.asarray(v, np.float64) for k, v in
            {"lpips": d, "style": s, "content": c, "tv": tv, "total": total}.items()}


def gatys_result(style_path: Path, style_image, photo_path: Path, photo, config, iters: int, cache: Path):
    """Gatys et al. for one photo, cached in `cache` by painting, photo, size, iterations and loss weights."""
    from stylizer_eval import optimize_image

    key = json.dumps([str(Path(style_path).resolve()), str(Path(photo_path).resolve()), photo.shape, iters,
                      config.content_weight, config.style_weight, config.tv_weight, config.content_layer,
                      config.size])
    tag = hashlib.sha256(key.encode()).hexdigest()[:8]
    path = cache / Path(style_path).stem / f"{Path(photo_path).stem}_{tag}.png"
    if not path.exists():
        t0 = time.perf_counter()
        image, _ = optimize_image(photo, [style_image], [1.0], iters, config.content_weight, config.style_weight,
                                  config.tv_weight, content_layer=config.content_layer, log_every=iters)
        iu.save_image(path, image)
        print(f"gatys {path.parent.name}/{path.stem}: {time.perf_counter() - t0:.0f} s", flush=True)
    # The PNG is what a user keeps: measure it as saved (8 bits), like the net's outputs below.
    return iu.load_image(path)


def evaluate_painting(style_path: Path, runs: dict, photos: dict, iters: int, out: Path, lpips, cache: dict) -> dict:
    """Ratios net / Gatys per photo for each budget's run of one painting."""
    from perceptual import vgg_features
    from stylizer_run import load_stylizer
    from stylizer_apply import stylize_array
    from stylizer_data import STYLE_LAYERS, style_image_grams

    nets = {b: load_stylizer(run) for b, run in runs.items()}
    config = next(iter(nets.values()))[1]
    if "vgg" not in cache:
        cache["vgg"] = vgg_features(sorted(set(STYLE_LAYERS) | {"relu2_2", "relu3_3"}), name="quality_vgg")
    vgg = cache["vgg"]
    target = style_image_grams([style_path], config.size, vgg, STYLE_LAYERS)[0]
    style_image = iu.resize_short_side(iu.load_image(style_path), config.size)  # as the net's target sees it
    result = {"per_photo": {}, "pictures": {}}
    for name, (photo_path, photo) in photos.items():
        gatys = gatys_result(style_path, style_image, photo_path, photo, config, iters, out)
        outputs = [gatys] + [iu.to_uint8(stylize_array(nets[b][0], photo, np.ones(1, np.float32))) / 255.0
                             for b in runs]
        m = losses(outputs, photo, target, config, vgg, lpips)
        row = {"gatys": {k: float(m[k][0]) for k in METRICS}}
        for i, b in enumerate(runs, 1):
            row[str(b)] = {k: float(m[k][i]) for k in METRICS}
            row[str(b)].update({f"{k}_vs_gatys": float(m[k][i] / m[k][0]) for k in ("lpips", "style", "total")})
        result["per_photo"][name] = row
        result["pictures"][name] = [photo, *outputs]
    return result


def summarize(per_painting: dict, budgets) -> dict:
    """Per budget, the mean over paintings and photos of each ratio (and the range)."""
    summary = {}
    for b in budgets:
        ratios = {k: [row[str(b)][f"{k}_vs_gatys"] for r in per_painting.values() for row in r["per_photo"].values()]
                  for k in ("lpips", "style", "total")}
        summary[str(b)] = {f"{k}_vs_gatys": float(np.mean(v)) for k, v in ratios.items()}
        summary[str(b)].update({f"{k}_vs_gatys_range": [float(min(v)), float(max(v))] for k, v in ratios.items()})
    return summary


def write_figure(path: Path, pictures: dict, budgets):
    """Rows: photos; columns: the photo, Gatys, the net at each budget (labelled)."""
    labels = ["photo", "Gatys", *[f"net, {b} steps" for b in budgets]]
    tiles = []
    for row in pictures.values():
        side = 256
        for label, im in zip(labels, row):
            tiles.append(iu.put_label(iu.center_crop(iu.resize_short_side(im, side), side), label))
    iu.save_image(path, iu.image_grid(tiles, cols=len(labels)))


def photo_arguments(ap: argparse.ArgumentParser, paintings: str):
    """--style (repeated), --content (repeated) and --held-out, as the single- and eight-style experiments take them."""
    ap.add_argument("--style", type=Path, action="append", default=[],
                    help=f"a painting (repeat; default: {paintings})")
    ap.add_argument("--content", type=Path, action="append", default=[],
                    help="a training photo folder (repeat; default: content-train and content-train-more)")
    ap.add_argument("--held-out", type=Path, default=SHARED / "content", help="held-out photos")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=iu.HelpFormatter)
    photo_arguments(ap, "starry_night, the_scream, la_muse, wave")
    ap.add_argument("--budgets", default="600,2400",
                    help="comma-separated training steps (of the recipe's batch), one net each: the demo's and 4x")
    ap.add_argument("--size", type=int, default=128, help="training crop size")
    ap.add_argument("--eval-side", type=int, default=0,
                    help="shorter side of the held-out photos; 0: the training --size (the scale the net learnt)")
    ap.add_argument("--gatys-iters", type=int, default=300, help="Gatys iterations per photo")
    ap.add_argument("--train-args", default="", help="more stylizer.py train flags (quoted), e.g. a recipe")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "quality", help="runs and results")
    ap.add_argument("--gatys-cache", type=Path, help="where Gatys results are kept (default: OUT/gatys); share it "
                                                     "between experiments with the same loss weights")
    ap.add_argument("--figure", type=Path, help="write the side-by-side picture of the first painting here")
    ap.add_argument("--record", action="store_true", help="write docs/results/quality.json from this run")
    args = ap.parse_args(argv)
    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    styles = args.style or DEFAULT_STYLES
    missing = [p for p in [*styles, *(args.content or DEFAULT_TRAIN), args.held_out] if not Path(p).exists()]
    if missing:
        return iu.fail(f"{missing[0]}: not found (the defaults are in ../shared/data)")

    import stylizer
    from perceptual import LPIPS

    content = training_folder(args.content or DEFAULT_TRAIN, args.out)
    timings_path = args.out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    runs = {}
    for style in styles:
        runs[style] = {}
        for b in budgets:
            run = args.out / f"{Path(style).stem}_{b}"
            t0 = time.perf_counter()
            code = stylizer.main(["train", "--recipe", "cpu-demo", "--style", str(style), "--content", str(content),
                                  "--run-dir", str(run),
                                  "--size", str(args.size), "--steps", str(b), "--log-every", "50",
                                  "--set", f"snapshot_every={b}", "--checkpoint-every", str(max(100, b // 4)),
                                  *shlex.split(args.train_args)])
            if code:
                return iu.fail(f"training {run} failed (exit {code})", code=1)
            timings.setdefault(run.name, time.perf_counter() - t0)
            iu.atomic_write_json(timings_path, timings)
            runs[style][b] = run
    side = args.eval_side or args.size
    photos = {f.stem: (f, iu.resize_short_side(iu.load_image(f), side)) for f in iu.list_images(args.held_out)}
    lpips, cache, per_painting = LPIPS(), {}, {}
    for style in styles:
        per_painting[Path(style).stem] = evaluate_painting(style, runs[style], photos, args.gatys_iters,
                                                           args.gatys_cache or args.out / "gatys", lpips, cache)
    if args.figure:
        write_figure(args.figure, per_painting[Path(styles[0]).stem]["pictures"], budgets)
        print(f"wrote {args.figure}")
    summary = summarize(per_painting, budgets)
    results = {"summary": summary, "budgets": budgets, "size": args.size, "eval_side": side,
               "gatys_iters": args.gatys_iters, "train_args": args.train_args,
               "train_seconds": {r.name: timings.get(r.name) for rs in runs.values() for r in rs.values()},
               "per_painting": {k: v["per_photo"] for k, v in per_painting.items()}}
    iu.atomic_write_json(args.out / "results.json", results)
    for b in budgets:
        s = summary[str(b)]
        print(f"{b} steps: LPIPS {s['lpips_vs_gatys']:.3f}x Gatys, style {s['style_vs_gatys']:.3f}x, "
              f"total {s['total_vs_gatys']:.3f}x")
    brief = {str(b): {k: round(v, 4) for k, v in summary[str(b)].items() if not k.endswith("_range")}
             for b in budgets}
    if args.record:
        from records import write_record

        write_record("quality", {"per_budget": summary, "budgets": budgets, "paintings": list(per_painting),
                                 "targets": TARGETS, "per_painting": results["per_painting"]},
                     "benchmarks/quality.py", argv)
    print(json.dumps(brief))
    return 0


if __name__ == "__main__":
    sys.exit(main())
