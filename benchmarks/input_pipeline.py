"""Does the content pipeline keep a GPU fed at COCO scale? Makes a COCO-like folder once, then measures the
stylizer's content stage (content_stream.py) on it: photos per second at 256 px crops with 1, 2, ... decoding
workers, each decoder alone in one thread (OpenCV's and Pillow's reduced-size JPEG decoding, a full decode), the
start-up of a run (listing the folder the first time, reading the run's list after), and resident memory over the
run.

    python benchmarks/input_pipeline.py --make runs/coco_like --count 20000      # make the folder (once), measure
    python benchmarks/input_pipeline.py --folder res/coco/train2014/train2014      # a real COCO folder

The folder: `--count` JPEGs of COCO's size distribution (640 px on the longer side for most, 480 x 640 and
427 x 640 the commonest shapes, a tenth smaller or squarer), each a random crop of a source photo (by default the 32
of ../shared/data/content-train and content-train-more, else the built-in images), resized and re-encoded at
quality 90 with a photo-like noise. Start-up is timed on it and scaled to 100,000 photos (`startup_s_100k`); the
last line is JSON with `images_per_s` (with the most --workers measured), `speedup_2_workers`, `startup_s_100k`
(after the first run), `first_listing_s_100k` and `rss_growth_mb` (resident memory after the measured photos over
after the first batch).
Targets on 2 cores: >= 200 photos/s, 2 workers >= 1.7x one, start-up <= 5 s, memory growth <= 100 MB over 20,000
photos.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "benchmarks"))

import content_stream as C  # noqa: E402
import image_utilities as iu  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
# COCO train2014's commonest shapes (height x width at 640 px on the longer side) and how often they occur, roughly.
SHAPES = [((480, 640), 0.45), ((427, 640), 0.2), ((640, 480), 0.1), ((640, 427), 0.05), ((425, 640), 0.05),
          ((512, 640), 0.05), ((640, 640), 0.03), ((360, 640), 0.04), ((300, 400), 0.03)]
TARGETS = {"images_per_s": 200, "speedup_2_workers": 1.7, "startup_s_100k": 5.0, "rss_growth_mb": 100,
           "input_wait_share": 0.02}


def source_photos() -> list[np.ndarray]:
    files = [f for d in ("content-train", "content-train-more") for f in iu.list_images(SHARED / d)] \
        if SHARED.exists() else []
    if files:
        return [iu.to_uint8(iu.load_image(f)) for f in files]
    import builtin_images

    return [iu.to_uint8(im) for im in builtin_images.default_content(640).values()]


def make_folder(folder: Path, count: int, seed: int = 0) -> int:
    """Write the missing ones of `count` COCO-like JPEGs into folder/NNN/ (1,000 a subfolder); returns how many
    were written."""
    import cv2

    sources, written = source_photos(), 0
    shapes, weights = zip(*SHAPES)
    weights = np.asarray(weights) / np.sum(weights)
    for i in range(count):
        path = folder / f"{i // 1000:03d}" / f"coco_like_{i:06d}.jpg"
        if path.exists():
            continue
        rng = np.random.default_rng([seed, i])  # photo i is the same whatever was written before it
        source = sources[int(rng.integers(len(sources)))]
        h, w = shapes[int(rng.choice(len(shapes), p=weights))]
        scale = rng.uniform(0.5, 1.0) * min(source.shape[0] / h, source.shape[1] / w)
        ch, cw = max(8, int(h * scale)), max(8, int(w * scale))
        top, left = int(rng.integers(0, source.shape[0] - ch + 1)), int(rng.integers(0, source.shape[1] - cw + 1))
        photo = cv2.resize(source[top:top + ch, left:left + cw], (w, h), interpolation=cv2.INTER_CUBIC)
        photo = np.clip(photo + rng.normal(0, 3, photo.shape), 0, 255).astype(np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        ok, data = cv2.imencode(".jpg", photo[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        iu.atomic_write_bytes(path, data.tobytes())
        written += 1
    return written


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def pipeline_rate(files, workers: int, photos: int, size: int, batch: int) -> tuple[float, float, float]:
    """(photos/s, resident MB after the first batch, after the last) of content_dataset over `photos` photos."""
    stream = C.ContentStream(files, size, seed=0)
    data = iter(C.content_dataset(stream, 0, batch, workers))
    next(data)  # the pipeline's start and first batch
    before, t0 = rss_mb(), time.perf_counter()
    for _ in range(photos // batch):
        next(data)
    return photos / (time.perf_counter() - t0), before, rss_mb()


def decoder_rate(files, method: str, size: int, photos: int) -> float:
    t0 = time.perf_counter()
    for f in files[:photos]:
        C.decode_short_side(f, size, method)
    return min(photos, len(files)) / (time.perf_counter() - t0)


def fed_training(files, size: int, batch: int, steps: int, workers: int = 0,
                 precision: str = "mixed_bfloat16") -> dict:
    """The stylizer's compiled training step (single style) fed by the content pipeline, as training runs it:
    photos/s and the share of the wall time the step spent waiting for its batch."""
    import speed

    run = speed.stylizer_step("none", 1, batch, size, precision=precision)
    data = iter(C.content_dataset(C.ContentStream(files, size, seed=0), 0, batch, workers))
    for _ in range(2):  # tracing and warm-up
        run(next(data)[0])
    wait, start = 0.0, time.perf_counter()
    for _ in range(steps):
        t0 = time.perf_counter()
        content, _ = next(data)
        wait += time.perf_counter() - t0
        run(content)
    total = time.perf_counter() - start
    return {"train_images_per_s": steps * batch / total, "input_wait_share": wait / total,
            "train_size": size, "train_batch": batch, "train_steps": steps, "train_precision": precision}


def startup(folder: Path) -> dict:
    """Seconds to start a run on the folder: listing it and saving the run's list (a new run), and reading that
    list back (every restart); both also scaled to 100,000 photos."""
    with tempfile.TemporaryDirectory() as run:
        t0 = time.perf_counter()
        count = len(C.content_files(folder, run))
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        C.content_files(folder, run)
        again = time.perf_counter() - t0
    scale = 100_000 / count
    return {"first_listing_s": first, "startup_s": again, "first_listing_s_100k": first * scale,
            "startup_s_100k": again * scale}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=iu.HelpFormatter)
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--make", type=Path, metavar="DIR", help="make (or complete) a COCO-like folder here, then "
                                                                  "measure it")
    where.add_argument("--folder", type=Path, help="measure an existing folder of photos")
    ap.add_argument("--count", type=int, default=20000, help="photos in the --make folder")
    ap.add_argument("--photos", type=int, default=0, help="photos of the long run with the most workers (0: the "
                                                          "whole folder); each worker count reads a tenth of it")
    ap.add_argument("--workers", default="1,2", help="comma-separated decoding threads to measure")
    ap.add_argument("--size", type=int, default=256, help="crop size")
    ap.add_argument("--batch-size", type=int, default=8, help="photos per batch")
    ap.add_argument("--train-steps", type=int, default=30, help="steps of the stylizer's training step fed by the "
                                                                "pipeline, for the share of time it waits (0: none)")
    ap.add_argument("--train-size", type=int, default=128, help="crop size of those training steps (the CPU demo's)")
    ap.add_argument("--train-batch", type=int, default=4, help="batch of those training steps")
    ap.add_argument("--out", type=Path, help="also write the report here (JSON)")
    ap.add_argument("--record", action="store_true", help="write docs/results/input_pipeline.json from this run")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    folder = args.make or args.folder
    if args.make:
        t0 = time.perf_counter()
        made = make_folder(args.make, args.count)
        print(f"{args.make}: {made} photos written ({args.count} in all) in {time.perf_counter() - t0:.0f} s",
              flush=True)
    started = startup(folder)  # first: the first listing's time is that of a folder not listed in this process
    files = C.content_files(folder)
    report = {"folder": str(folder), "photos": len(files), "size": args.size, **started}
    report["decoders_single_thread"] = {m: decoder_rate(files, m, args.size, 300) for m in C.DECODERS}
    workers = [int(w) for w in args.workers.split(",")]
    rates = {}
    # Every worker count on the same photos (a tenth of the folder), read once before so that none finds them colder
    # in the page cache than another, for the speed-up; then the most workers over the whole folder (or --photos),
    # for the rate and resident memory over a long run.
    n = min(args.photos or len(files), max(args.batch_size, len(files) // 10))
    pipeline_rate(files[:n], max(workers), n, args.size, args.batch_size)
    for w in workers:
        rates[w] = pipeline_rate(files[:n], w, n, args.size, args.batch_size)[0]
        print(f"{w} workers: {rates[w]:.0f} photos/s over {n} photos", flush=True)
    total = args.photos or len(files)
    rate, before, after = pipeline_rate(files, max(workers), total, args.size, args.batch_size)
    print(f"{max(workers)} workers: {rate:.0f} photos/s over {total} photos; resident {before:.0f} -> "
          f"{after:.0f} MB", flush=True)
    report.update(images_per_s=rate, rss_growth_mb=after - before, rss_photos=total)
    report["images_per_s_by_workers"] = {str(w): r for w, r in rates.items()}
    if 1 in rates and 2 in rates:
        report["speedup_2_workers"] = rates[2] / rates[1]
    if args.train_steps:
        report.update(fed_training(files, args.train_size, args.train_batch, args.train_steps))
        print(f"training step fed by the pipeline: {report['train_images_per_s']:.1f} photos/s, waiting for data "
              f"{100 * report['input_wait_share']:.2f}% of the time", flush=True)
    report["targets"] = {k: {"target": v, "met": (report[k] >= v) if k in ("images_per_s", "speedup_2_workers")
                             else report[k] <= v} for k, v in TARGETS.items() if k in report}
    for k, t in report["targets"].items():
        print(f"{k}: {report[k]:.2f} (target {'>=' if k in ('images_per_s', 'speedup_2_workers') else '<='} "
              f"{t['target']}): {'MET' if t['met'] else 'MISSED'}")
    print("decoders, one thread: " + ", ".join(f"{m} {r:.0f}/s" for m, r in report["decoders_single_thread"].items()))
    print(f"start-up: first listing {report['first_listing_s']:.2f} s, then {report['startup_s']:.3f} s "
          f"({report['startup_s_100k']:.2f} s at 100,000 photos)")
    if args.out:
        iu.atomic_write_json(args.out, report)
    if args.record:
        from records import write_record

        write_record("input_pipeline", report, "benchmarks/input_pipeline.py", argv)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
