"""Look at a folder of images before training on it: which files are readable and why the others are not, sizes,
colour statistics, near-duplicates, and a contact sheet. A style-sample folder (style_sampler.py output) also gets
its manifest summary: the weight histogram of each style, images per t, missing files, and a sheet laid out as
pairs (rows) x t (columns).

    python inspect_images.py DIR [--sheet OUT.png] [--json]

Unreadable files are reported, not fatal (exit 0); a missing or empty folder is a one-line error (exit 2).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

import image_utilities as iu
import sample_folder
import sample_folder


def _average_hash(image: np.ndarray) -> np.ndarray:
    gray = cv2.resize(image.mean(axis=2), (8, 8), interpolation=cv2.INTER_AREA)
    return (gray > gray.mean()).ravel()


def inspect_folder(folder, sheet=None, thumb: int = 96, duplicate_bits: int = 3, arrange=None) -> dict:
    """Every image file in `folder`: which are readable, why others are not, sizes, colour statistics and
    near-duplicates. With `sheet`, also writes a contact sheet there: the readable files in name order, or whatever
    `arrange({file: square thumbnail})` lays out."""
    folder = Path(folder)
    if not folder.is_dir():
        raise iu.ImageError(folder, "no such folder")
    files = iu.list_images(folder)
    if not files:
        raise iu.ImageError(folder, "folder holds no image files")
    unreadable, sizes, thumbs, hashes = [], Counter(), {}, []
    total, total_sq, n_pixels = np.zeros(3), np.zeros(3), 0
    for f in files:
        rel = str(f.relative_to(folder))
        try:
            im = iu.load_image(f)
        except iu.ImageError as e:
            unreadable.append({"file": rel, "reason": e.reason})
            continue
        h, w = im.shape[:2]
        sizes[f"{w}x{h}"] += 1
        flat = im.reshape(-1, 3).astype(np.float64)
        total += flat.sum(0)
        total_sq += (flat ** 2).sum(0)
        n_pixels += flat.shape[0]
        hashes.append((rel, _average_hash(im)))
        thumbs[rel] = iu.square_crop(im, thumb) if sheet else None
    mean = total / max(n_pixels, 1)
    std = np.sqrt(np.maximum(total_sq / max(n_pixels, 1) - mean ** 2, 0.0))
    report = {
        "folder": str(folder),
        "files": len(files),
        "readable": len(hashes),
        "unreadable": unreadable,
        "sizes": dict(sizes.most_common()),
        "channel_mean": [round(float(v), 4) for v in mean],
        "channel_std": [round(float(v), 4) for v in std],
        "near_duplicates": [[a, b] for i, (a, ha) in enumerate(hashes) for b, hb in hashes[i + 1:]
                            if int(np.count_nonzero(ha != hb)) <= duplicate_bits],
    }
    if sheet:
        iu.save_image(sheet, arrange(thumbs) if arrange else contact_sheet(thumbs))
        report["sheet"] = str(sheet)
    return report


def contact_sheet(thumbs: dict, limit: int = 256) -> np.ndarray:
    """The first `limit` thumbnails of {file: thumbnail} in a square-ish grid, each captioned with its file name."""
    shown = list(thumbs)[:limit]
    return iu.image_grid([thumbs[r] for r in shown], captions=[Path(r).name[:24] for r in shown])


# --------------------------------------------------------------------------------------------------------------------
# Style-sample folders

def inspect(folder, sheet=None) -> dict:
    """inspect_folder, plus a "manifest" summary and a pairs x t sheet when `folder` is a style-sample folder."""
    entries = sample_folder.read_manifest(folder) if Path(folder).is_dir() else []
    arrange = (lambda thumbs: pairs_by_t_sheet(entries, thumbs)) if entries else None
    report = inspect_folder(folder, sheet=sheet, arrange=arrange)
    if entries:
        unreadable = {u["file"] for u in report["unreadable"]}
        missing = [e["file"] for e in entries if e["file"] in unreadable or not (Path(folder) / e["file"]).is_file()]
        report["manifest"] = manifest_summary(entries, style_names=sample_folder.style_names(
            folder, len(entries[0]["weights"])), missing=missing)
    return report


def manifest_summary(entries, style_names, missing) -> dict:
    weights = np.array([e["weights"] for e in entries], dtype=np.float64)
    bins = np.linspace(0.0, 1.0, 11)
    per_t = Counter(f"{float(e['t']):.3f}" for e in entries)
    return {
        "entries": len(entries),
        "pairs": len({e["pair"] for e in entries}),
        "weight_bins": [round(float(b), 2) for b in bins],
        "weight_histograms": {name: np.histogram(weights[:, i], bins=bins)[0].tolist()
                              for i, name in enumerate(style_names)},
        "per_t_counts": dict(sorted(per_t.items())),
        "missing_files": sorted(set(missing)),
        "weights_sum_to_one": bool(np.allclose(weights.sum(axis=1), 1.0, atol=1e-4)),
    }


def pairs_by_t_sheet(entries, thumbs: dict, max_pairs: int = 32) -> np.ndarray:
    """Samples laid out as pairs (rows) x t (columns), the natural way to read an interpolation."""
    ts = sorted({float(e["t"]) for e in entries})
    pairs = sorted({e["pair"] for e in entries})[:max_pairs]
    cell = {(e["pair"], float(e["t"])): e["file"] for e in entries}
    blank = np.ones_like(next(iter(thumbs.values())))
    images, captions = [], []
    for p in pairs:
        for t in ts:
            f = cell.get((p, t))
            images.append(thumbs.get(f, blank) if f else blank)
            captions.append(f"p{p} t={t:.2f}" if t in (ts[0], ts[-1]) else "")
    return iu.image_grid(images, cols=len(ts), captions=captions)


def format_report(report: dict) -> str:
    lines = [f"{report['folder']}: {report['files']} image files, {report['readable']} readable, "
             f"{len(report['unreadable'])} unreadable"]
    for u in report["unreadable"]:
        lines.append(f"  unreadable {u['file']}: {u['reason']}")
    lines.append("  sizes: " + ", ".join(f"{k} x{v}" for k, v in report["sizes"].items()))
    lines.append(f"  channel mean {report['channel_mean']}  std {report['channel_std']}")
    lines.append(f"  near-duplicate pairs: {len(report['near_duplicates'])}")
    for a, b in report["near_duplicates"][:10]:
        lines.append(f"    {a} ~ {b}")
    m = report.get("manifest")
    if m:
        lines.append(f"  manifest: {m['entries']} entries, {m['pairs']} pairs, weights sum to 1: "
                     f"{m['weights_sum_to_one']}, missing files: {len(m['missing_files'])}")
        for name, hist in m["weight_histograms"].items():
            lines.append(f"    weight of {name:>14} per 0.1 bin: {hist}")
        lines.append("    images per t: " + ", ".join(f"{t}:{n}" for t, n in m["per_t_counts"].items()))
    if "sheet" in report:
        lines.append(f"  contact sheet: {report['sheet']}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=iu.HelpFormatter)
    parser.add_argument("folder", type=Path, help="folder to inspect (searched recursively)")
    parser.add_argument("--sheet", type=Path, help="write a contact sheet PNG here (default: none)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return parser


def inspect_command(args) -> int:
    report = inspect(args.folder, sheet=args.sheet)
    print(json.dumps(report) if args.json else format_report(report))
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    parser.set_defaults(run=inspect_command)
    return iu.run_main(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
