"""The content photos a stylizer trains on, at COCO scale (82,783 JPEGs):

- `content_files`: the run folder keeps the sorted list of its photos (content_files.json, with their count and a
  hash) from its first start, so a restart of a 100,000-photo run reads one file instead of listing the folder, and
  photos added to the folder later do not change a resumed run's order;
- `ContentStream`: position p is photo p % N of a permutation seeded by (seed, p // N), cut to a random crop seeded
  by (seed, p); an unreadable photo is skipped and listed (bad_content.txt) without shifting what follows, so a
  resumed run continues with exactly the next unread photo. Each worker of a multi-worker run reads its own share
  of the photos (every W-th of the list), so no photo appears twice in one global step;
- `decode_short_side`: a photo decoded straight to about the size training needs (when a JPEG is at least twice
  that size, its DCT scaling skips most of the work: OpenCV's reduced-size decoding) in 8 bits, then shrunk with an
  area filter;
- `content_dataset`: a tf.data pipeline that decodes `workers` photos at once (OpenCV releases the GIL) in a
  deterministic order, and carries with each batch the position after it.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

import image_utilities as iu
from run_config import RunError

LIST_NAME = "content_files.json"
# OpenCV's JPEG decoding at 1/2, 1/4 or 1/8 of the size (the DCT's own scaling: most of the work skipped).
REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
DECODERS = ("opencv", "pillow", "full")


# --------------------------------------------------------------------------------------------------------------------
# The list of photos, made once per run

def list_hash(names: list[str]) -> str:
    return hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest()


def content_files(folder, run_path=None, write: bool = True, shares: int = 1) -> list[Path]:
    """The photos under `folder` (recursively, naturally sorted): read from RUN/content_files.json when the run
    folder has one, else listed, and saved there with their count, hash and the number of workers that share them
    when `run_path` is given and `write` (the chief of a multi-worker run writes it; the other workers read it once
    it is there). A run resumed with another number of workers would deal the photos differently: refused."""
    folder = Path(folder)
    saved = Path(run_path) / LIST_NAME if run_path else None
    if saved is not None and saved.exists():
        try:
            record = json.loads(saved.read_text())
            names = record["files"]
            if len(names) != record["count"] or list_hash(names) != record["sha256"]:
                raise ValueError("count or hash does not match the list")
        except (ValueError, KeyError, TypeError) as e:
            raise RunError(f"{saved}: damaged list of content photos ({e}); delete it to list the folder "
                           "again") from None
        if record.get("shares", 1) != shares:
            raise RunError(f"{saved}: this run deals its photos to {record.get('shares', 1)} workers; resume it "
                           f"with as many (it has {shares} now)")
        return [folder / n for n in names]
    if not folder.is_dir():
        raise RunError(f"{folder}: no such content folder")
    files = iu.list_images(folder)
    if not files:
        raise RunError(f"{folder}: no .jpg/.png content images found (searched recursively)")
    if saved is not None and write:
        names = [str(f.relative_to(folder)) for f in files]
        iu.atomic_write_json(saved, {"folder": str(folder), "count": len(names), "sha256": list_hash(names),
                                     "shares": shares, "files": names})
    return files


# --------------------------------------------------------------------------------------------------------------------
# Decoding

def decode_short_side(path, short_side: int, method: str = "opencv", max_pixels: int = iu.DEFAULT_MAX_PIXELS):
    """A photo as uint8 RGB [H, W, 3] with its shorter side `short_side` (enlarged when smaller). `opencv`: JPEGs
    decoded at the largest reduction that keeps the shorter side at least `short_side`; `pillow`: the same through
    Pillow's draft mode; `full`: every pixel decoded first. Other formats are decoded whole. ImageError naming the
    file for anything unreadable."""
    path = Path(path)
    try:
        with Image.open(path) as im:  # reads the header only: the size, and whether it is a JPEG
            width, height, kind = im.size[0], im.size[1], im.format
    except FileNotFoundError:
        raise iu.ImageError(path, "no such file") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise iu.ImageError(path, f"not a readable image ({e})") from None
    if width * height > max_pixels:
        raise iu.ImageError(path, f"{width}x{height} is over the limit of {max_pixels:,} pixels")
    factor = max([1] + [f for f in REDUCED if min(width, height) // f >= short_side])
    image = None
    if kind == "JPEG" and method == "opencv" and jpeg_ends(path):
        # (OpenCV fills a truncated JPEG with grey instead of failing: one without its end marker at the end, or
        # with data after it, goes through Pillow, which tells the two apart.)
        bgr = cv2.imread(str(path), REDUCED[factor] if factor > 1 else cv2.IMREAD_COLOR)
        image = None if bgr is None else bgr[..., ::-1]
    elif kind == "JPEG" and method in ("opencv", "pillow"):
        try:
            with Image.open(path) as im:
                im.draft("RGB", (width // factor, height // factor))
                image = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        except (OSError, SyntaxError, ValueError) as e:
            raise iu.ImageError(path, f"truncated or corrupt image data ({e})") from None
    if image is None:  # other formats, `full`, or a JPEG OpenCV could not read: the checked general loader
        image = iu.to_uint8(iu.load_image(path, max_pixels))
    h, w = image.shape[:2]
    scale = short_side / min(h, w)
    size = (max(short_side, round(w * scale)), max(short_side, round(h * scale)))
    if size != (w, h):
        image = cv2.resize(np.ascontiguousarray(image), size,
                           interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    return np.ascontiguousarray(image)


def jpeg_ends(path: Path) -> bool:
    """Whether a JPEG file ends with its end-of-image marker (some writers pad a few bytes after it)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 64))
        return b"\xff\xd9" in f.read()


def crop_at(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random size x size crop of a uint8 image whose shorter side is `size`, mirrored half the time; float32."""
    h, w = image.shape[:2]
    top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    crop = image[top:top + size, left:left + size]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return crop.astype(np.float32) / 255.0


# --------------------------------------------------------------------------------------------------------------------
# The stream

class ContentStream:
    """Content crops in a seeded order that depends only on (seed, position): position p is item p % N of the
    permutation for epoch p // N of this worker's share of the photos. Unreadable files are skipped (and listed)
    without shifting what follows, so a resumed run continues with exactly the next unread item. Safe to call from
    several decoding threads at once."""

    def __init__(self, files, size: int, seed: int, bad_list: Path | None = None, shard=(0, 1),
                 method: str = "opencv", folder=None):
        index, count = shard
        self.folder = folder or (Path(files[0]).parent if files else "the content folder")
        self.all_files = list(files)
        self.files = self.all_files[index::count]  # this worker's share
        if not self.files:
            raise RunError(f"worker {index} of {count} has no content photos ({len(self.all_files)} in all)")
        self.size, self.seed, self.bad_list, self.method = size, seed + 7919 * index, bad_list, method
        self.bad = set(bad_list.read_text().splitlines()) if bad_list and bad_list.exists() else set()
        self._lock = threading.Lock()
        self._perms = {}  # epoch -> permutation (the two newest)

    def file_at(self, position: int) -> Path:
        epoch, i = divmod(int(position), len(self.files))
        with self._lock:
            perm = self._perms.get(epoch)
            if perm is None:
                perm = np.random.default_rng([self.seed, epoch, 77]).permutation(len(self.files))
                self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}
                self._perms[epoch] = perm
        return self.files[perm[i]]

    def load(self, position) -> tuple[np.ndarray, bool]:
        """(crop, True) for the photo at `position`, or (zeros, False) when it cannot be read (then listed)."""
        path = self.file_at(position)
        if str(path) not in self.bad:
            try:
                image = decode_short_side(path, self.size, self.method)
                return crop_at(image, self.size, np.random.default_rng([self.seed, int(position), 13])), True
            except iu.ImageError as e:
                self.report_bad(path, e)
        return np.zeros((self.size, self.size, 3), np.float32), False

    def batch(self, position: int, batch_size: int) -> tuple[np.ndarray, int]:
        """`batch_size` crops starting at `position`, in this thread; returns them and the position after the last
        item used (what content_dataset computes with parallel decoding)."""
        crops, tried = [], 0
        while len(crops) < batch_size:
            if tried > len(self.files):
                raise RunError(f"{self.folder}: no readable content photos among the {len(self.files)} of this worker")
            crop, ok = self.load(position)
            position, tried = position + 1, tried + 1
            if ok:
                crops.append(crop)
                tried = 0
        return np.stack(crops), position

    def fixed_crops(self, n: int) -> list[np.ndarray]:
        """Centre crops of the first `n` readable photos of the whole list (in name order): the rows of every
        snapshot."""
        crops, errors = [], []
        for path in self.all_files:
            if len(crops) == n:
                break
            if str(path) in self.bad:
                continue
            try:
                crops.append(iu.center_crop(decode_short_side(path, self.size, self.method), self.size)
                             .astype(np.float32) / 255.0)
            except iu.ImageError as e:
                errors.append((path, e))
        if not crops:  # one line, not one per file and then a traceback from inside tf.data
            raise RunError(f"{self.folder}: none of its {len(self.all_files)} content photos can be read (first: "
                           f"{errors[0][1]})" if errors else
                           f"{self.folder}: every content photo is listed in {self.bad_list} as unreadable")
        for path, e in errors:
            self.report_bad(path, e)
        return crops

    def report_bad(self, path: Path, error):
        with self._lock:
            if str(path) in self.bad:
                return
            self.bad.add(str(path))
            print(f"skipped content {error}", file=sys.stderr, flush=True)
            if self.bad_list:
                iu.atomic_write_text(self.bad_list, "".join(f"{b}\n" for b in sorted(self.bad)))


def default_workers() -> int:
    """One decoding thread per core this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def content_dataset(stream: ContentStream, position: int, batch_size: int, workers: int = 0):
    """A tf.data pipeline over the stream from `position`: batches of crops with the position after each, decoded
    `workers` at a time (0: one per core) in a deterministic order and ahead of the training step (prefetch). The
    position travels with its batch, so the checkpoint saved after a step names exactly the next unread item."""
    import tensorflow as tf

    size = stream.size

    def load(p):
        crop, ok = tf.numpy_function(stream.load, [p], [tf.float32, tf.bool], stateful=False)
        crop.set_shape((size, size, 3))
        ok.set_shape(())
        return crop, ok, p

    options = tf.data.Options()
    options.deterministic = True
    dataset = (tf.data.Dataset.range(position, 2 ** 62)
               .map(load, num_parallel_calls=workers or default_workers(), deterministic=True)
               .filter(lambda crop, ok, p: ok)
               .batch(batch_size, drop_remainder=True)
               .map(lambda crops, ok, p: (crops, p[-1] + 1))
               .prefetch(2))
    return dataset.with_options(options)
