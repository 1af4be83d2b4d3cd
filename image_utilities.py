"""Pixels in and out: load any common image safely, save atomically, crop, resize, grids, quad figures, GIFs,
folder inspection and the built-in procedural default styles and content.

Every array here is float32 HxWx3 in [0, 1] unless a docstring says otherwise. This module imports nothing else of
ours, so every other module can rely on it.

CLI:
    python image_utilities.py gif DIR OUT.gif [--fps N]
    python image_utilities.py inspect DIR [--sheet OUT.png] [--json]
    python image_utilities.py grid IMG... --out OUT.png [--cols N]
    python image_utilities.py defaults --out DIR [--size PX]
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# We enforce our own, raisable pixel cap in load_image; Pillow's global one would fire first and differently.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
DEFAULT_MAX_PIXELS = 100_000_000


class ImageError(ValueError):
    """A file that cannot be used as an image. The message always starts with the file's path."""

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


# --------------------------------------------------------------------------------------------------------------------
# Atomic writes: the one home for "temp file in the same folder, fsync, os.replace".

def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write `data` to `path` so that readers only ever see the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes the file private; give it the mode a plain open() would
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------------------------------------------------
# Loading and saving

def _to_float_rgb(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> float32 HxWx3 in [0,1]; transparency is composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float32)
        scale = 65535.0 if img.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        a = np.clip(a / scale, 0.0, 1.0)
        return np.repeat(a[..., None], 3, axis=2)
    if img.mode == "F":
        a = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        return np.repeat(a[..., None], 3, axis=2)
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:4]
        return rgba[..., :3] * alpha + (1.0 - alpha)
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def _load_16bit_png(path: Path) -> np.ndarray | None:
    """Pillow reduces 16-bit RGB(A) PNGs to 8 bits; OpenCV keeps all 16."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    if raw is None or raw.dtype != np.uint16:
        return None
    a = raw.astype(np.float32) / 65535.0
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=2)
    if a.shape[2] == 4:
        rgb, alpha = a[..., 2::-1], a[..., 3:4]
        return rgb * alpha + (1.0 - alpha)
    return np.ascontiguousarray(a[..., ::-1])


def load_image(path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Load an image file as float32 HxWx3 RGB in [0,1], upright (EXIF orientation applied).

    Reads JPEG (also CMYK and grayscale), PNG (8/16-bit, palette, alpha composited on white), WebP, BMP, TIFF and the
    first frame of a GIF. Raises ImageError naming the file for anything unusable, including images over
    `max_pixels` (a guard against decompression bombs).
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(path, "no such file")
    if path.is_dir():
        raise ImageError(path, "is a directory, not an image file")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ImageError(path, f"cannot read: {e.strerror or e}") from None
    if size == 0:
        raise ImageError(path, "empty file (0 bytes)")
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise ImageError(path, f"{w}x{h} is {w * h:,} pixels, over the limit of {max_pixels:,} "
                                       "(raise max_pixels if you trust this file)")
            img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img)
            pixels = _to_float_rgb(img)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(path, "not a recognised image format") from None
    except PermissionError:
        raise ImageError(path, "cannot read: permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        reason = str(e) or type(e).__name__
        if "truncated" in reason or isinstance(e, EOFError):
            reason = f"truncated image data ({reason})"
        else:
            reason = f"corrupt image data ({reason})"
        raise ImageError(path, reason) from None
    if path.suffix.lower() == ".png" and _png_bit_depth(path) == 16:
        deep = _load_16bit_png(path)
        if deep is not None and deep.shape == pixels.shape:
            pixels = deep
    return np.ascontiguousarray(pixels, dtype=np.float32)


def _png_bit_depth(path: Path) -> int:
    """Bit depth from the PNG IHDR chunk (byte 24), without decoding."""
    with open(path, "rb") as f:
        head = f.read(25)
    if len(head) < 25 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return 8
    return head[24]


def to_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def encode_image(array: np.ndarray, suffix: str, quality: int = 95) -> bytes:
    """Encode an HxWx3 (or HxW) array as PNG or JPEG bytes."""
    img = Image.fromarray(to_uint8(array))
    buf = io.BytesIO()
    suffix = suffix.lower()
    if suffix == ".png":
        img.save(buf, format="PNG")
    elif suffix in (".jpg", ".jpeg"):
        img.convert("RGB").save(buf, format="JPEG", quality=quality)
    else:
        raise ValueError(f"cannot save '{suffix}': use .png or .jpg")
    return buf.getvalue()


def save_image(path, array: np.ndarray, quality: int = 95) -> Path:
    """Save atomically as PNG or JPEG (by extension), creating parent folders."""
    path = Path(path)
    return atomic_write_bytes(path, encode_image(array, path.suffix, quality))


def list_images(folder, recursive: bool = True) -> list[Path]:
    """Image files (by extension) under `folder`, naturally sorted, hidden files skipped."""
    folder = Path(folder)
    pattern = folder.rglob("*") if recursive else folder.glob("*")
    files = [p for p in pattern if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return sorted(files, key=natural_key)


def natural_key(path) -> list:
    """Sort key that puts snap_2 before snap_10."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", str(path))]


# --------------------------------------------------------------------------------------------------------------------
# Geometry

def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize with an area filter when shrinking (no aliasing) and bicubic when enlarging."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image.astype(np.float32, copy=False)
    shrinking = height * width < h * w
    out = cv2.resize(image.astype(np.float32, copy=False), (width, height),
                     interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    if out.ndim == 2 and image.ndim == 3:
        out = out[..., None]
    return np.clip(out, 0.0, 1.0)


def resize_max_side(image: np.ndarray, max_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    s = max_side / max(h, w)
    return resize(image, max(1, round(h * s)), max(1, round(w * s)))


def resize_short_side(image: np.ndarray, short_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    s = short_side / min(h, w)
    return resize(image, max(short_side, round(h * s)), max(short_side, round(w * s)))


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Square crop from the middle; images smaller than `size` are first enlarged."""
    if min(image.shape[:2]) < size:
        image = resize_short_side(image, size)
    h, w = image.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return image[top:top + size, left:left + size]


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator, scale=(1.0, 1.0),
                flip: bool = True, rotate90: bool = False) -> np.ndarray:
    """A random `size`x`size` crop.

    scale=(lo, hi): the crop covers `size * s` source pixels with s log-uniform in [lo, hi] (clipped to the image),
    then is resized to `size`, so s > 1 zooms out and s < 1 zooms in. flip: random horizontal mirror.
    rotate90: random multiple of 90 degrees.
    """
    h, w = image.shape[:2]
    lo, hi = scale
    s = math.exp(rng.uniform(math.log(lo), math.log(hi))) if hi > lo else lo
    side = int(round(min(size * s, h, w)))
    side = max(side, 1)
    top = int(rng.integers(0, h - side + 1))
    left = int(rng.integers(0, w - side + 1))
    crop = image[top:top + side, left:left + side]
    if side != size:
        crop = resize(crop, size, size)
    if flip and rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rotate90:
        crop = np.rot90(crop, int(rng.integers(0, 4)))
    return np.ascontiguousarray(crop, dtype=np.float32)


# --------------------------------------------------------------------------------------------------------------------
# Figures

def put_label(image: np.ndarray, text: str, scale: float | None = None) -> np.ndarray:
    """Draw `text` on a dark band at the top-left corner (OpenCV's built-in font: no font files needed)."""
    out = to_uint8(image).copy()
    h, w = out.shape[:2]
    scale = scale or max(0.3, min(w, h) / 400.0)
    thickness = max(1, int(round(scale * 1.5)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(2, int(3 * scale))
    cv2.rectangle(out, (0, 0), (min(w, tw + 2 * pad), min(h, th + base + 2 * pad)), (0, 0, 0), -1)
    cv2.putText(out, text, (pad, th + pad), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness,
                cv2.LINE_AA)
    return out.astype(np.float32) / 255.0


def image_grid(images, cols: int | None = None, pad: int = 2, background: float = 1.0,
               captions=None) -> np.ndarray:
    """Tile images row by row; each is resized to the first image's size. Optional caption per image."""
    images = [np.asarray(im, dtype=np.float32) for im in images]
    if not images:
        raise ValueError("image_grid needs at least one image")
    h, w = images[0].shape[:2]
    cols = cols or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    grid = np.full((rows * h + (rows + 1) * pad, cols * w + (cols + 1) * pad, 3), background, np.float32)
    for i, im in enumerate(images):
        if im.ndim == 2:
            im = np.repeat(im[..., None], 3, axis=2)
        if im.shape[:2] != (h, w):
            im = resize(im, h, w)
        if captions is not None and captions[i]:
            im = put_label(im, str(captions[i]))
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y:y + h, x:x + w] = im
    return grid


def thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """A square thumbnail: the shorter side scaled to `size`, then the middle (no squashing)."""
    return center_crop(resize_short_side(image, size), size)


def contact_sheet(thumbs, captions, cols: int | None = None) -> np.ndarray:
    """A grid of thumbnails with captions, for looking at a folder."""
    return image_grid(thumbs, cols=cols, captions=captions)


def quad_figure(input_a, input_b, recon_a, recon_b, labels=("input A", "input B")) -> np.ndarray:
    """The original project's 2x2 figure: two inputs on top, their reconstructions below, labelled."""
    la, lb = labels
    return image_grid([input_a, input_b, recon_a, recon_b], cols=2, pad=4,
                      captions=[la, lb, f"reconstruction of {la}", f"reconstruction of {lb}"])


def make_gif(folder, out, fps: float = 4.0, pattern: str = "*") -> tuple[int, int]:
    """Animate the images in `folder` matching `pattern` (natural order) into a looping GIF. Frames of another size
    are resized to the first frame's size; unreadable files are skipped. Returns (frames written, files skipped)."""
    import imageio.v3 as iio

    frames, skipped = [], 0
    out = Path(out)
    for f in list_images(folder, recursive=False):
        if f.resolve() == out.resolve() or not f.match(pattern):
            continue
        try:
            im = load_image(f)
        except ImageError as e:
            print(f"skipped {e}", file=sys.stderr)
            skipped += 1
            continue
        if frames and im.shape[:2] != frames[0].shape[:2]:
            im = resize(im, *frames[0].shape[:2])
        frames.append(to_uint8(im))
    if not frames:
        raise ImageError(folder, "no readable images to animate")
    buf = io.BytesIO()
    iio.imwrite(buf, np.stack(frames), extension=".gif", duration=1000.0 / fps, loop=0)
    atomic_write_bytes(out, buf.getvalue())
    return len(frames), skipped


# --------------------------------------------------------------------------------------------------------------------
# Inspect a folder

def _average_hash(image: np.ndarray) -> np.ndarray:
    gray = cv2.resize(image.mean(axis=2), (8, 8), interpolation=cv2.INTER_AREA)
    return (gray > gray.mean()).ravel()


def read_manifest(path) -> list[dict]:
    """Lines of a style sampler manifest.jsonl; a torn last line (a killed writer) is ignored."""
    entries = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return entries


def inspect(folder, sheet=None, thumb: int = 96, duplicate_bits: int = 3) -> dict:
    """Look at every image file in `folder`: which are readable, why others are not, sizes, colour statistics and
    near-duplicates; with a style sampler manifest, also the style weight histogram and per-t counts. Writes a contact
    sheet to `sheet` when given (pair x t when a manifest is present)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(folder, "no such folder")
    files = list_images(folder)
    if not files:
        raise ImageError(folder, "folder holds no image files")
    readable, unreadable, sizes, thumbs = [], [], Counter(), {}
    total, total_sq, n_pixels = np.zeros(3), np.zeros(3), 0
    hashes = []
    for f in files:
        rel = str(f.relative_to(folder))
        try:
            im = load_image(f)
        except ImageError as e:
            unreadable.append({"file": rel, "reason": e.reason})
            continue
        readable.append(rel)
        h, w = im.shape[:2]
        sizes[f"{w}x{h}"] += 1
        flat = im.reshape(-1, 3).astype(np.float64)
        total += flat.sum(0)
        total_sq += (flat ** 2).sum(0)
        n_pixels += flat.shape[0]
        hashes.append((rel, _average_hash(im)))
        thumbs[rel] = thumbnail(im, thumb) if sheet else None
    mean = total / max(n_pixels, 1)
    std = np.sqrt(np.maximum(total_sq / max(n_pixels, 1) - mean ** 2, 0.0))
    duplicates = [[a, b] for i, (a, ha) in enumerate(hashes) for b, hb in hashes[i + 1:]
                  if int(np.count_nonzero(ha != hb)) <= duplicate_bits]
    report = {
        "folder": str(folder),
        "files": len(files),
        "readable": len(readable),
        "unreadable": unreadable,
        "sizes": dict(sizes.most_common()),
        "channel_mean": [round(float(v), 4) for v in mean],
        "channel_std": [round(float(v), 4) for v in std],
        "near_duplicates": duplicates,
    }
    manifest_path = folder / "manifest.jsonl"
    entries = read_manifest(manifest_path) if manifest_path.exists() else []
    if entries:
        sampler = folder / "sampler.json"
        names = json.loads(sampler.read_text()).get("style_names") if sampler.exists() else None
        report["manifest"] = _manifest_summary(entries, readable, names)
    if sheet:
        _write_sheet(sheet, readable, thumbs, entries)
        report["sheet"] = str(sheet)
    return report


def _manifest_summary(entries, readable, names=None) -> dict:
    weights = np.array([e["weights"] for e in entries], dtype=np.float64)
    names = names or [f"style_{i}" for i in range(weights.shape[1])]
    bins = np.linspace(0.0, 1.0, 11)
    histograms = {name: np.histogram(weights[:, i], bins=bins)[0].tolist() for i, name in enumerate(names)}
    per_t = Counter(f"{float(e['t']):.3f}" for e in entries)
    listed = {e["file"] for e in entries}
    return {
        "entries": len(entries),
        "pairs": len({e["pair"] for e in entries}),
        "weight_bins": [round(float(b), 2) for b in bins],
        "weight_histograms": histograms,
        "per_t_counts": dict(sorted(per_t.items())),
        "missing_files": sorted(listed - set(readable)),
        "weights_sum_to_one": bool(np.allclose(weights.sum(axis=1), 1.0, atol=1e-4)),
    }


def _write_sheet(sheet, readable, thumbs, entries):
    if entries:
        # Lay the samples out as pairs (rows) x t (columns), the natural way to read an interpolation.
        ts = sorted({float(e["t"]) for e in entries})
        pairs = sorted({e["pair"] for e in entries})[:32]
        cell = {(e["pair"], float(e["t"])): e["file"] for e in entries}
        blank = np.ones_like(next(iter(thumbs.values())))
        images, captions = [], []
        for p in pairs:
            for t in ts:
                f = cell.get((p, t))
                images.append(thumbs.get(f, blank) if f else blank)
                captions.append(f"p{p} t={t:.2f}" if t in (ts[0], ts[-1]) else "")
        grid = image_grid(images, cols=len(ts), captions=captions)
    else:
        shown = readable[:256]
        grid = contact_sheet([thumbs[r] for r in shown], [Path(r).name[:24] for r in shown])
    save_image(sheet, grid)


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


# --------------------------------------------------------------------------------------------------------------------
# Built-in procedural defaults (no downloads, nobody else's artwork)

def honeycomb(size: int = 256, cell: float | None = None, seed: int = 0) -> np.ndarray:
    """Hexagonal wax cells: amber fills with per-cell shade, bright rims and dark walls. Deterministic."""
    rng = np.random.default_rng(seed)
    cell = cell or size / 7.0
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    # Axial coordinates of a pointy-top hex grid, rounded to the nearest centre (cube rounding).
    q = (math.sqrt(3) / 3 * x - y / 3) / cell
    r = (2.0 / 3 * y) / cell
    cx, cz = q, r
    cy = -cx - cz
    rx, ry, rz = np.round(cx), np.round(cy), np.round(cz)
    dx, dy, dz = np.abs(rx - cx), np.abs(ry - cy), np.abs(rz - cz)
    fix_x = (dx > dy) & (dx > dz)
    fix_y = ~fix_x & (dy > dz)
    rx = np.where(fix_x, -ry - rz, rx)
    ry = np.where(fix_y, -rx - rz, ry)
    rz = -rx - ry
    # 0 at the cell centre, 1 on its wall: each wall is the bisector towards a neighbour at a cube offset like
    # (1, -1, 0), i.e. where the offset's dot product with it reaches 1.
    ox, oy, oz = cx - rx, cy - ry, cz - rz
    edge = np.maximum(np.maximum(np.abs(ox - oy), np.abs(oy - oz)), np.abs(oz - ox))
    cell_id = (rx.astype(np.int64) * 7919 + rz.astype(np.int64) * 104729) % 1000
    shade = rng.uniform(0.75, 1.15, 1000)[cell_id]
    amber = np.array([0.95, 0.65, 0.12])
    fill = amber[None, None, :] * shade[..., None] * (1.0 - 0.35 * edge[..., None] ** 2)
    rim = np.clip((edge - 0.80) / 0.07, 0.0, 1.0)[..., None]
    wall = np.clip((edge - 0.90) / 0.04, 0.0, 1.0)[..., None]
    out = fill * (1 - rim) + np.array([1.0, 0.88, 0.5]) * rim
    out = out * (1 - wall) + np.array([0.25, 0.13, 0.03]) * wall
    return np.clip(out, 0, 1).astype(np.float32)


def night_swirls(size: int = 256, seed: int = 0) -> np.ndarray:
    """Brush strokes following a field of vortices over a deep-blue sky, with haloed stars: a swirling night sky
    made from scratch. Deterministic for a given size and seed."""
    rng = np.random.default_rng(seed)
    unit = size / 256.0
    canvas = np.zeros((size, size, 3), np.float32)
    grad = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    canvas[:] = (1 - grad) * np.array([0.05, 0.12, 0.35]) + grad * np.array([0.1, 0.25, 0.55])
    vortices = [(rng.uniform(0, size), rng.uniform(0, size), rng.choice([-1, 1]) * rng.uniform(0.6, 1.4))
                for _ in range(5)]

    def flow(px, py):
        vx, vy = 0.35, 0.05  # a gentle wind so strokes never stall
        for cx, cy, s in vortices:
            dx, dy = px - cx, py - cy
            d2 = dx * dx + dy * dy + (12 * unit) ** 2
            k = s * math.exp(-d2 / (2 * (70 * unit) ** 2)) * 60 * unit / math.sqrt(d2)
            vx, vy = vx - k * dy / math.sqrt(d2) * 3, vy + k * dx / math.sqrt(d2) * 3
        n = math.hypot(vx, vy) + 1e-6
        return vx / n, vy / n

    palette = np.array([[0.10, 0.20, 0.55], [0.20, 0.40, 0.80], [0.55, 0.70, 0.95], [0.95, 0.85, 0.35],
                        [0.15, 0.30, 0.65], [0.80, 0.85, 0.95]], np.float32)
    img = to_uint8(canvas)
    for _ in range(int(900 * unit * unit) + 50):
        px, py = rng.uniform(0, size), rng.uniform(0, size)
        pts = []
        for _ in range(int(rng.integers(6, 16))):
            pts.append((px, py))
            vx, vy = flow(px, py)
            px, py = px + vx * 3 * unit, py + vy * 3 * unit
        colour = palette[rng.choice(len(palette), p=[0.25, 0.3, 0.15, 0.1, 0.15, 0.05])]
        colour = np.clip(colour * rng.uniform(0.85, 1.15), 0, 1)
        cv2.polylines(img, [np.round(np.array(pts) * 16).astype(np.int32)], False,
                      tuple(int(c * 255) for c in colour), max(1, int(round(2.2 * unit))), cv2.LINE_AA, shift=4)
    out = img.astype(np.float32) / 255.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for _ in range(6):
        sx, sy, r = rng.uniform(0, size), rng.uniform(0, size * 0.6), rng.uniform(4, 9) * unit
        d = np.sqrt((xx - sx) ** 2 + (yy - sy) ** 2)
        halo = np.exp(-(d / (3 * r)) ** 2)[..., None] * 0.6 + (d < r)[..., None] * 0.8
        out = out * (1 - np.clip(halo, 0, 1)) + np.array([1.0, 0.92, 0.55]) * np.clip(halo, 0, 1)
    return np.clip(out, 0, 1).astype(np.float32)


DEFAULT_STYLES = {"night_swirls": night_swirls, "honeycomb": honeycomb}


def default_styles(size: int = 256) -> dict[str, np.ndarray]:
    """The built-in style images, by name, at `size`x`size`."""
    return {name: make(size) for name, make in DEFAULT_STYLES.items()}


def _procedural_scene(size: int, seed: int) -> np.ndarray:
    """A simple landscape: sky gradient, sun, hills and a few houses, for content that is not a texture."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    img = (1 - y) * np.array([0.45, 0.7, 0.95]) + y * np.array([0.85, 0.9, 0.95])
    img = to_uint8(np.broadcast_to(img, (size, size, 3)).copy()).copy()
    cv2.circle(img, (int(size * rng.uniform(0.15, 0.85)), int(size * 0.2)), int(size * 0.08), (250, 220, 90), -1,
               cv2.LINE_AA)
    for layer, colour in enumerate([(60, 130, 70), (40, 100, 50)]):
        xs = np.arange(size)
        base = size * (0.55 + 0.15 * layer)
        ys = base + size * 0.08 * np.sin(xs / size * rng.uniform(4, 9) + rng.uniform(0, 6))
        poly = np.concatenate([np.stack([xs, ys], 1), [[size - 1, size - 1], [0, size - 1]]]).astype(np.int32)
        cv2.fillPoly(img, [poly], colour, cv2.LINE_AA)
    for _ in range(3):
        w = int(size * rng.uniform(0.08, 0.14))
        x0, y0 = int(rng.uniform(0.05, 0.8) * size), int(size * rng.uniform(0.72, 0.82))
        wall = tuple(int(c) for c in rng.integers(150, 240, 3))
        cv2.rectangle(img, (x0, y0 - w), (x0 + w, y0), wall, -1)
        roof = np.array([[x0 - w // 6, y0 - w], [x0 + w + w // 6, y0 - w], [x0 + w // 2, y0 - int(1.6 * w)]])
        cv2.fillPoly(img, [roof], (150, 50, 40), cv2.LINE_AA)
        cv2.rectangle(img, (x0 + w // 3, y0 - w // 2), (x0 + 2 * w // 3, y0), (80, 50, 30), -1)
    return img.astype(np.float32) / 255.0


def default_content(size: int = 256) -> dict[str, np.ndarray]:
    """The built-in content set: photographs that matplotlib ships plus procedural scenes, by name, `size` square."""
    import matplotlib.cbook

    out = {}
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png"):
        try:
            path = matplotlib.cbook.get_sample_data(name, asfileobj=False)
            out[Path(name).stem.lower()] = center_crop(resize_short_side(load_image(path), size), size)
        except (ImageError, OSError, ValueError):
            continue  # a matplotlib build without sample data still gets the procedural scenes
    for seed in range(3):
        out[f"scene_{seed}"] = _procedural_scene(size, seed)
    return out


def write_defaults(out_dir, size: int = 256) -> dict[str, list[Path]]:
    """Write the default styles to OUT/styles and the default content to OUT/content (idempotent)."""
    out_dir = Path(out_dir)
    written = {"styles": [], "content": []}
    for kind, images in (("styles", default_styles(size)), ("content", default_content(size))):
        for name, im in images.items():
            path = out_dir / kind / f"{name}.png"
            if not path.exists():
                save_image(path, im)
            written[kind].append(path)
    return written


# --------------------------------------------------------------------------------------------------------------------
# CLI

def fail(message: str, code: int = 2) -> int:
    """Print a one-line error and return the exit code (2: bad input). Shared by every script's main()."""
    print(f"error: {message}", file=sys.stderr)
    return code


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("gif", help="animate a folder of snapshots into a GIF (natural order)")
    p.add_argument("folder", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--fps", type=float, default=4.0)
    p.add_argument("--glob", default="*", help="only files whose name matches, e.g. 'pair_00000_*.png'")
    p = sub.add_parser("inspect", help="report on a folder of images (or style samples)")
    p.add_argument("folder", type=Path)
    p.add_argument("--sheet", type=Path, help="write a contact sheet PNG here")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p = sub.add_parser("grid", help="tile images into one picture")
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cols", type=int)
    p = sub.add_parser("defaults", help="write the built-in styles and content as PNGs")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "res")
    p.add_argument("--size", type=int, default=256)
    args = parser.parse_args(argv)

    try:
        if args.command == "gif":
            if not args.folder.is_dir():
                return fail(f"{args.folder}: no such folder")
            if args.fps <= 0:
                return fail(f"--fps must be positive, got {args.fps}")
            n, skipped = make_gif(args.folder, args.out, args.fps, args.glob)
            print(f"wrote {args.out}: {n} frames at {args.fps:g} fps, {skipped} files skipped")
        elif args.command == "inspect":
            report = inspect(args.folder, sheet=args.sheet)
            print(json.dumps(report) if args.json else format_report(report))
        elif args.command == "grid":
            images = [load_image(p) for p in args.images]
            save_image(args.out, image_grid(images, cols=args.cols))
            print(f"wrote {args.out}")
        elif args.command == "defaults":
            written = write_defaults(args.out, args.size)
            print(f"wrote {len(written['styles'])} styles and {len(written['content'])} content images under "
                  f"{args.out}")
    except ImageError as e:
        return fail(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
