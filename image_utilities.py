"""Pixels in and out: load any common image safely, save atomically (images, text, JSON, npz), resize and crop,
grids, labelled figures and GIFs.

Every array here is float32 HxWx3 in [0, 1] unless a docstring says otherwise. This module imports nothing else of
ours, so every other module can rely on it; it also holds the two helpers every script's CLI shares (HelpFormatter,
fail).

    python image_utilities.py gif DIR OUT.gif [--fps N] [--glob PATTERN]
    python image_utilities.py grid IMG... --out OUT.png [--cols N]

Its neighbours: builtin_images.py makes the built-in procedural styles and content, inspect_images.py reports on a
folder of images (and on a style-sample folder).
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# We enforce our own, raisable pixel cap in load_image; Pillow's global one would fire first and differently.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
DEFAULT_MAX_PIXELS = 100_000_000


class UserError(Exception):
    """Input the program cannot use (a file, a folder, a flag value). Its message is one line that names the file or
    flag and says what is wrong; every script's main() prints it as `error: ...` and exits with 2 (run_main)."""


class ImageError(UserError, ValueError):
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


class OutputPathError(UserError, ValueError):
    """An output path that cannot be created (a file stands where a folder must be)."""


def make_dirs(folder) -> Path:
    """mkdir -p, with a one-line OutputPathError naming the file that blocks it instead of an OSError."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), folder)
        raise OutputPathError(f"{folder}: cannot create this folder: {blocking} is a file") from None
    return folder


TEMP_PATTERNS = (".*.tmp", "*_temp", ".*.partial.*")  # atomic writes, TensorFlow checkpoint staging, video staging


def stale_temps(folder, before: float) -> list[Path]:
    """Temp files and folders under `folder` that a killed writer left: they match TEMP_PATTERNS and were last
    modified before `before` (a time.time()), so no live writer that started since is still filling them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = {p for pattern in TEMP_PATTERNS for p in folder.rglob(pattern)}
    return sorted(p for p in found if p.exists() and p.stat().st_mtime < before)


def remove_stale_temps(folder, before: float) -> list[Path]:
    """Remove stale_temps(folder, before); returns what it removed."""
    removed = stale_temps(folder, before)
    for p in removed:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return removed


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write `data` to `path` so that readers only ever see the old file or the complete new one."""
    path = Path(path)
    make_dirs(path.parent)
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


def atomic_write_npz(path, arrays: dict) -> Path:
    """Save named numpy arrays as an uncompressed .npz (np.savez), atomically."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


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
    if not np.isfinite(pixels).all():  # a float TIFF can hold NaN: it would poison every number computed from it
        raise ImageError(path, f"holds {int((~np.isfinite(pixels)).any(-1).sum())} NaN or infinite pixels")
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


def square_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The shorter side scaled to `size`, then the middle square: the one way we cut a square picture out of any
    image without squashing it (thumbnails, fixed content crops, evaluation images)."""
    return center_crop(resize_short_side(image, size), size)


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
# CLI

class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every script's --help: the module docstring as written, then each option with its default after its help
    ("none" for an empty one; required options and those whose help already says their default are left alone)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if not action.option_strings or action.required or action.default is argparse.SUPPRESS \
                or "default" in text:
            return text
        if action.default in (None, "", []):
            return f"{text} (default: none)"
        return f"{text} (default: %(default)s)"


def fail(message: str, code: int = 2) -> int:
    """Print a one-line error and return the exit code (2: bad input). Shared by every script's main()."""
    print(f"error: {message}", file=sys.stderr)
    return code


def os_error_line(e: OSError) -> str:
    """An OSError as one line that names the file: 'runs/x/.lock: cannot write here: permission denied'."""
    reason = (e.strerror or str(e) or type(e).__name__).lower()
    what = {PermissionError: "permission denied", IsADirectoryError: "is a folder, not a file",
            NotADirectoryError: "a file stands where a folder must be"}.get(type(e), reason)
    return f"{e.filename}: {what}" if e.filename else what


def run_main(parser: argparse.ArgumentParser, argv=None, prepare=None) -> int:
    """Every script's main(): `prepare(parser, argv)` first if given (a job's recipe: run_config.apply_recipe), parse
    `argv`, call the function its (sub)command set as `run`, and turn bad input (UserError, ValueError) and refused
    file operations (OSError: a read-only folder, a file where a folder must be) into one line on stderr and exit
    code 2."""
    try:
        if prepare is not None:
            prepare(parser, argv)
        args = parser.parse_args(argv)
        return args.run(args)
    except (UserError, ValueError) as e:
        return fail(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
    except OSError as e:
        return fail(os_error_line(e))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("gif", help="animate a folder of snapshots into a GIF (natural order)",
                       formatter_class=HelpFormatter)
    p.set_defaults(run=gif_command)
    p.add_argument("folder", type=Path, help="folder of frames (not searched recursively)")
    p.add_argument("out", type=Path, help="the GIF to write")
    p.add_argument("--fps", type=float, default=4.0, help="frames per second")
    p.add_argument("--glob", default="*", help="only files whose name matches, e.g. 'pair_00000_*.png'")
    p = sub.add_parser("grid", help="tile images into one picture", formatter_class=HelpFormatter)
    p.set_defaults(run=grid_command)
    p.add_argument("images", nargs="+", type=Path, help="images, tiled row by row")
    p.add_argument("--out", type=Path, required=True, help="the PNG or JPEG to write")
    p.add_argument("--cols", type=int, help="images per row (default: a square-ish grid)")
    return parser


def gif_command(args) -> int:
    if not args.folder.is_dir():
        return fail(f"{args.folder}: no such folder")
    if args.fps <= 0:
        return fail(f"--fps must be positive, got {args.fps}")
    n, skipped = make_gif(args.folder, args.out, args.fps, args.glob)
    print(f"wrote {args.out}: {n} frames at {args.fps:g} fps, {skipped} files skipped")
    return 0


def grid_command(args) -> int:
    save_image(args.out, image_grid([load_image(p) for p in args.images], cols=args.cols))
    print(f"wrote {args.out}")
    return 0


def main(argv=None) -> int:
    return run_main(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
