"""Flicker of stylized video, measured: per-frame stylization against each `stylize --video --stable` mode.

    python video_stability.py [--run-dir RUN] [--photo IMG | --clip VIDEO] [--frames 24]
                              [--height 192 --width 256] [--strength 1] [--style A.jpg ...] [--out JSON]

Flicker is the warped-frame error of Lai et al. 2018 ("Learning Blind Video Temporal Consistency"): the previous
output warped to the current frame by the motion between the input frames, and the mean absolute difference to the
current output over the pixels that motion explains (not occluded, not from outside the frame), averaged over the
clip. The default clip is synthetic: a still photo seen by a camera that pans, zooms in and turns a little, with
per-frame sensor noise and brightness jitter (builtin_images.camera_clip); its motion is known exactly, so the
measure does not depend on an optical-flow estimate (and is independent of the DIS flow the `flow` mode uses). A
user clip (--clip) is measured with OpenCV's Farneback flow and a forward-backward check instead.

For each mode it prints the warped-frame error and its ratio to per-frame stylization, the per-frame style loss
(Gram loss against the run's style images at the strength used, or --style) and its ratio, and seconds per frame
and their ratio, all measured in this run; the last line is JSON with `warp_error_vs_per_frame` and
`cost_vs_per_frame` of the mode `--stable` picks by default (flow). Targets: warped-frame error <= 0.5x per-frame,
at <= 1.5x its cost, with the style loss within 1.1x. `make demo` runs it on the demo's net (docs/results-video.md).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import builtin_images
import image_utilities as iu
from stylizer_video import optical_flow, reliable_flow, stylize_frames, warp

ROOT = Path(__file__).resolve().parent

SHARED = ROOT.parent / "shared" / "data"
DEFAULT_MODE = "flow"  # what `stylize --video --stable` does
TARGETS = {"warp_error_vs_per_frame": 0.5, "cost_vs_per_frame": 1.5, "style_loss_vs_per_frame": 1.1}


def warp_errors(outputs, flows) -> list[float]:
    """Per frame t >= 1: mean |out_t - out_{t-1} warped by flow t->t-1| over the pixels where the flow is finite."""
    errors = []
    for t in range(1, len(outputs)):
        flow = flows[t - 1]
        valid = np.isfinite(flow).all(-1)
        warped = warp(outputs[t - 1], np.nan_to_num(flow))
        errors.append(float(np.abs(outputs[t] - warped)[valid].mean()))
    return errors


def estimated_flows(frames) -> list[np.ndarray]:
    """For a user clip: Farneback flow t -> t-1, NaN where the forward-backward check fails."""
    flows = []
    for t in range(1, len(frames)):
        back = optical_flow(frames[t], frames[t - 1], "farneback")
        forward = optical_flow(frames[t - 1], frames[t], "farneback")
        back[reliable_flow(back, forward) == 0] = np.nan
        flows.append(back)
    return flows


def read_clip(path: Path, frames: int, max_side: int) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise iu.ImageError(path, "cannot open as a video")
    out = []
    while len(out) < frames:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(iu.resize_max_side(frame[..., ::-1].astype(np.float32) / 255.0, max_side))
    cap.release()
    if len(out) < 2:
        raise iu.ImageError(path, "fewer than two frames")
    return out


def default_run() -> Path:
    for candidate in (ROOT / "runs" / "experiment" / "mix_channels", ROOT / "runs" / "demo" / "stylizer"):
        if (candidate / "config.json").exists():
            return candidate
    raise SystemExit("no --run-dir given and neither runs/experiment/mix_channels nor runs/demo/stylizer exists; "
                     "run `make demo` first")


def default_photo() -> np.ndarray:
    photos = iu.list_images(SHARED / "content") if (SHARED / "content").is_dir() else []
    if photos:
        return iu.load_image(photos[0])
    return next(iter(builtin_images.default_content(512).values()))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=iu.HelpFormatter)
    ap.add_argument("--run-dir", type=Path, help="a trained stylizer run (default: runs/experiment/mix_channels, "
                                                 "else runs/demo/stylizer)")
    ap.add_argument("--photo", type=Path, help="still photo for the synthetic clip (default: the first evaluation "
                                               "photo of ../shared/data/content, else a built-in one)")
    ap.add_argument("--clip", type=Path, help="measure this video instead of a synthetic clip (default: none)")
    ap.add_argument("--frames", type=int, default=24, help="frames of the clip")
    ap.add_argument("--height", type=int, default=192, help="synthetic clip height (a --clip: longer side cap)")
    ap.add_argument("--width", type=int, default=256, help="synthetic clip width")
    ap.add_argument("--seed", type=int, default=0, help="seed of the noise and brightness jitter")
    ap.add_argument("--strength", type=float, default=1.0, help="strength to stylize at")
    ap.add_argument("--style", action="append", default=[], help="style images for the style loss, in the run's "
                                                                 "order (default: the run's own --style images)")
    ap.add_argument("--modes", default="none,stats,flow,both", help="modes to measure, none = per-frame")
    ap.add_argument("--out", type=Path, help="also write the report here as JSON (default: none)")
    ap.set_defaults(run=measure_command)
    return ap


def clip_and_flows(args):
    """The frames to stylize and the motion between them: a user clip (estimated flow) or the synthetic camera clip
    of a photo (its true motion), and a description of the source."""
    if args.clip:
        frames = read_clip(args.clip, args.frames, max(args.height, args.width))
        return frames, estimated_flows(frames), f"{args.clip} (Farneback flow)"
    photo = iu.load_image(args.photo) if args.photo else default_photo()
    frames, flows = builtin_images.camera_clip(photo, args.frames, (args.height, args.width), args.seed)
    return frames, flows, f"synthetic camera clip of {args.photo or 'the default photo'} (true motion)"


def measure_command(args) -> int:
    import stylizer_apply as A
    import stylizer_run as R
    from perceptual import gram_matrix, style_loss, vgg_features
    from stylizer_data import STYLE_LAYERS, style_image_grams

    run = args.run_dir or default_run()
    net, config, names = R.load_stylizer(run)
    weights = A.parse_weights(names, args.strength)
    styles = args.style or list(config.style_images)
    if len(styles) != len(names):
        return iu.fail(f"{run} has {len(names)} styles and no style images of its own: pass --style per style")
    frames, flows, source = clip_and_flows(args)
    layers = list(STYLE_LAYERS)
    vgg = vgg_features(layers, name="video_vgg")
    grams = style_image_grams(styles, config.size, vgg, layers)
    target = {k: sum(w * g[k][0] for w, g in zip(weights, grams)) for k in layers}

    def loss_of(outputs):
        values = []
        for out in outputs:
            feats = vgg(out[None])
            values.append(float(style_loss({k: gram_matrix(feats[k]) for k in layers}, target, layers)[0]))
        return float(np.mean(values))

    A.stylize_array(net, frames[0], weights)  # warm-up: the first call traces
    report = {"run": str(run), "clip": source, "frames": len(frames), "size": list(frames[0].shape[:2]),
              "strength": args.strength, "input_warp_error": float(np.mean(warp_errors(frames, flows))), "modes": {}}
    for mode in args.modes.split(","):
        t0 = time.perf_counter()
        outputs = list(stylize_frames(net, frames, lambda i: weights, mode))
        seconds = (time.perf_counter() - t0) / len(frames)
        report["modes"][mode] = {"warp_error": float(np.mean(warp_errors(outputs, flows))),
                                 "style_loss": loss_of(outputs), "seconds_per_frame": seconds}
    print_report(with_ratios(report))
    if args.out:
        iu.atomic_write_json(args.out, report)
    print(json.dumps(report))
    return 0


def with_ratios(report: dict) -> dict:
    """The report with each mode's measures over per-frame stylization's, and the default mode's against TARGETS."""
    base = report["modes"]["none"]
    for r in report["modes"].values():
        r["warp_error_vs_per_frame"] = r["warp_error"] / base["warp_error"]
        r["style_loss_vs_per_frame"] = r["style_loss"] / base["style_loss"]
        r["cost_vs_per_frame"] = r["seconds_per_frame"] / base["seconds_per_frame"]
    chosen = report["modes"].get(DEFAULT_MODE, base)
    report.update({k: chosen[k] for k in TARGETS})
    report["targets"] = {k: {"target": v, "met": chosen[k] <= v} for k, v in TARGETS.items()}
    return report


def print_report(report: dict):
    print(f"{report['clip']}: {report['frames']} frames at {report['size'][1]}x{report['size'][0]}, run "
          f"{report['run']}, strength {report['strength']}; input frames' own warped error "
          f"{report['input_warp_error']:.4f}")
    print("\n| mode | warped-frame error | vs per-frame | style loss | vs per-frame | s/frame | vs per-frame |\n"
          "|---|---|---|---|---|---|---|")
    for mode, r in report["modes"].items():
        print(f"| {'per-frame' if mode == 'none' else mode} | {r['warp_error']:.4f} | "
              f"{r['warp_error_vs_per_frame']:.2f}x | {r['style_loss']:.4g} | {r['style_loss_vs_per_frame']:.2f}x | "
              f"{r['seconds_per_frame']:.3f} | {r['cost_vs_per_frame']:.2f}x |")
    for k, t in report["targets"].items():
        print(f"{k} ({DEFAULT_MODE}): {report[k]:.2f}x, target <= {t['target']}x: {'MET' if t['met'] else 'MISSED'}")


def main(argv=None) -> int:
    return iu.run_main(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
