"""Using a trained stylizer: images, huge images, video, and export for serving.

- `stylize_array` (one image), `stylize_files` (files and folders, strength sweeps), `preserve_color` (keep the
  content's chroma), `parse_weights` / `parse_ramp` (the --strength, --weights and --strength-ramp values).
- `load_weight_map`, `stylize_map`: style weights per pixel (--strength-map, --weights-map), each region normalised
  with the statistics its own weights call for.
- `tiled_stylize`: images of any size in overlapping tiles that share the whole image's instance-norm statistics.
- `export`: a SavedModel (with a per-pixel `serving_map` signature), and optionally a .tflite, of the network.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

import image_utilities as iu
from stylizer_net import (fixed_statistics, per_pixel_weights, recording_statistics, size_problem, strength_weights,
                          unfused_norms)


def stylize_array(net, image: np.ndarray, weights) -> np.ndarray:
    out = net({"image": image[None].astype(np.float32), "weights": np.asarray(weights, np.float32)[None]},
              training=False)
    return np.asarray(out[0], np.float32)


def check_size(image: np.ndarray, path) -> np.ndarray:
    """`image`, or ImageError naming `path` when the network cannot take its size (stylizer_net.size_problem)."""
    problem = size_problem(*image.shape[:2])
    if problem:
        raise iu.ImageError(path, problem)
    return image


def parse_weights(names, strength=None, weights=None, style=None) -> np.ndarray:
    """The style weights of a net with styles `names` (or a style count) asked for by --style NAME (that style
    alone), --weights (one number per style in order, or NAME=W for some styles and 0 for the rest, summing to 1)
    or --strength (from the first style at 0 to the last at 1; default 1). ValueError with one line otherwise."""
    names = [f"style_{k}" for k in range(names)] if isinstance(names, int) else list(names)
    if style is not None:
        if style not in names:
            raise ValueError(f"--style {style}: no such style in this net (it has {', '.join(names)})")
        return np.eye(len(names), dtype=np.float32)[names.index(style)]
    if weights is not None:
        return named_weights(names, weights) if "=" in weights else numbered_weights(len(names), weights)
    s = 1.0 if strength is None else float(strength)
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"--strength must be in [0, 1], got {s}")
    return strength_weights(len(names), [s])[0]


def numbered_weights(num_styles: int, text: str) -> np.ndarray:
    try:
        w = np.array([float(v) for v in text.split(",")], np.float32)
    except ValueError:
        raise ValueError(f"--weights takes comma-separated numbers or NAME=WEIGHT pairs, got '{text}'") from None
    if len(w) != num_styles:
        raise ValueError(f"--weights needs {num_styles} values (one per style), got {len(w)}")
    return checked_sum(w)


def named_weights(names, text: str) -> np.ndarray:
    w = np.zeros(len(names), np.float32)
    for item in text.split(","):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in names:
            raise ValueError(f"--weights: no style '{name}' in this net (it has {', '.join(names)})")
        try:
            w[names.index(name)] = float(value)
        except ValueError:
            raise ValueError(f"--weights: '{item}' is not NAME=NUMBER") from None
    return checked_sum(w)


def checked_sum(w: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.isclose(w.sum(), 1.0, atol=1e-3):
        raise ValueError("--weights must be non-negative and sum to 1")
    return w


# --------------------------------------------------------------------------------------------------------------------
# Strength maps: style weights per pixel

def read_map(path) -> np.ndarray:
    """A grayscale map as float32 [H, W] in [0, 1]; ImageError (naming the file) if unreadable or coloured."""
    image = iu.load_image(path)
    if np.abs(image - image.mean(axis=-1, keepdims=True)).max() > 1.5 / 255:
        raise iu.ImageError(path, "has colour; a strength or weights map is grayscale (white = 1)")
    return image.mean(axis=-1)


def load_weight_map(num_styles: int, strength_map=None, weights_map=None) -> np.ndarray:
    """The [H, W, S] style weights of --strength-map (a grayscale map of the last style's weight: 1 - m on the
    first style, m on the last) or --weights-map (one grayscale map per style, comma-separated, normalised to sum
    to 1 at every pixel), at the first map's size. ValueError or ImageError with a one-line reason otherwise."""
    if num_styles < 2:
        raise ValueError("a single-style net has no strength to map")
    if strength_map is not None:
        m = read_map(strength_map)
        return np.stack([1.0 - m if k == 0 else (m if k == num_styles - 1 else np.zeros_like(m))
                         for k in range(num_styles)], -1).astype(np.float32)
    paths = [Path(p) for p in str(weights_map).split(",")]
    if len(paths) != num_styles:
        raise ValueError(f"--weights-map needs {num_styles} maps (one per style), got {len(paths)}")
    maps = [read_map(p) for p in paths]
    h, w = maps[0].shape
    maps = [m if m.shape == (h, w) else iu.resize(np.repeat(m[..., None], 3, -1), h, w)[..., 0] for m in maps]
    total = np.sum(maps, axis=0)
    if np.all(total == 0):
        raise iu.ImageError(paths[0], "the weights maps are all zero")
    if np.any(total <= 0):
        raise iu.ImageError(paths[0], f"the weights maps are all zero at {int((total <= 0).sum())} pixels; "
                                      "every pixel needs some weight")
    return (np.stack(maps, -1) / total[..., None]).astype(np.float32)


def fit_map(weight_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """A weight map resized to an input's size (each pixel's weights still summing to 1)."""
    if weight_map.shape[:2] == (height, width):
        return weight_map
    resized = np.stack([iu.resize(np.repeat(weight_map[..., k:k + 1], 3, -1), height, width)[..., 0]
                        for k in range(weight_map.shape[-1])], -1)
    return resized / np.maximum(resized.sum(-1, keepdims=True), 1e-8)


# Two styles: instance-norm statistics are taken from whole-image runs at these strengths and interpolated per pixel
MAP_LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)


def map_levels(weight_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The uniform weights (levels [K, S]) whose whole-image statistics a map needs, and per pixel how much of each
    ([H, W, K], summing to 1). Two styles: the strengths of MAP_LEVELS that bracket the map's values, plus its
    values themselves when it has at most three (a half-and-half or constant map then gets exactly the statistics
    of those strengths), interpolated linearly. More styles: each style used alone, mixed by the weights. Levels
    no pixel uses are dropped."""
    num_styles = weight_map.shape[-1]
    if num_styles == 2:
        m = weight_map[..., 1]
        grid = np.asarray(MAP_LEVELS)
        low, high = grid[grid <= m.min()].max(), grid[grid >= m.max()].min()
        ts = set(grid[(grid >= low) & (grid <= high)].tolist())
        distinct = np.unique(np.round(m, 4))
        if len(distinct) <= 3:
            ts |= set(distinct.tolist())
        ts = np.array(sorted(ts))
        coeffs = np.stack([np.interp(m, ts, np.eye(len(ts))[k]) for k in range(len(ts))], -1)
        levels = strength_weights(2, ts)
    else:
        levels, coeffs = np.eye(num_styles, dtype=np.float32), weight_map
    used = coeffs.reshape(-1, coeffs.shape[-1]).max(0) > 1e-6
    return levels[used], coeffs[..., used].astype(np.float32)


def level_statistics(net, image: np.ndarray, levels) -> list:
    """Instance-norm statistics of whole-image runs of `image` at each level's uniform weights."""
    out = []
    for w in levels:
        with recording_statistics(net) as stats:
            stylize_array(net, image, w)
        out.append(stats)
    return out


def prepare_map(weight_map: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights [H, W, S] fitted to an input's size, levels, per-pixel level coefficients): what a map needs for
    every input of that size, computed once (map_levels)."""
    weight_map = fit_map(weight_map, height, width)
    return (weight_map, *map_levels(weight_map))


def stylize_prepared(net, image: np.ndarray, prepared) -> np.ndarray:
    """stylize_map with a map already prepared for this image's size (prepare_map): the frames of a video share it."""
    weight_map, levels, coeffs = prepared
    stats = level_statistics(net, image, levels)
    with per_pixel_weights(net, weight_map, stats, coeffs):
        return stylize_array(net, image, levels[0])


def stylize_map(net, image: np.ndarray, weight_map: np.ndarray) -> np.ndarray:
    """Stylize with style weights per pixel (`weight_map` [H, W, S], resized to the image): each region at its own
    weights, with the instance-norm statistics each region's weights call for (per_pixel_weights)."""
    return stylize_prepared(net, image, prepare_map(weight_map, *image.shape[:2]))


def parse_ramp(text: str) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in text.split(":"))
    except ValueError:
        raise ValueError(f"--strength-ramp takes A:B, e.g. 0:1; got '{text}'") from None
    if not (0 <= a <= 1 and 0 <= b <= 1):
        raise ValueError("--strength-ramp values must be in [0, 1]")
    return a, b


def preserve_color(stylized: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Luminance-only transfer (Gatys et al. 2016, arXiv 1606.05897): the stylized image's luma with the content's
    chroma, in YCrCb."""
    import cv2

    y = cv2.cvtColor(stylized.astype(np.float32), cv2.COLOR_RGB2YCrCb)
    c = cv2.cvtColor(content.astype(np.float32), cv2.COLOR_RGB2YCrCb)
    c[..., 0] = y[..., 0]
    return np.clip(cv2.cvtColor(c, cv2.COLOR_YCrCb2RGB), 0.0, 1.0)


def output_names(files, suffix: str = ".png") -> dict[Path, str]:
    """One output name per input: its stem plus `suffix`, or, where inputs share a stem (a.jpg and a.png, or two
    folders' a.jpg), the stem with the extension (a_jpg.png) and, if that still repeats, its position in the list."""
    files = list(dict.fromkeys(Path(f) for f in files))
    stems = [f.stem for f in files]
    names = {f: f"{f.stem}{suffix}" if stems.count(f.stem) == 1 else f"{f.stem}_{f.suffix.lstrip('.')}{suffix}"
             for f in files}
    taken = list(names.values())
    return {f: n if taken.count(n) == 1 else f"{Path(n).stem}_{i}{suffix}" for i, (f, n) in enumerate(names.items())}


def stylize_files(net, names, inputs, out: Path, weights, sweep: int = 0, keep_color: bool = False,
                  max_side: int | None = None, tile: int | None = None, overwrite: bool = False,
                  weight_map: np.ndarray | None = None) -> tuple[int, int, list[Path]]:
    """Stylize files and folders into `out` (a strip of `sweep` strengths each, if given, or with per-pixel weights
    `weight_map`, resized to each input), one distinct output per input (output_names); an existing output is kept
    and listed as skipped unless `overwrite`. Returns (written, failed, skipped outputs)."""
    files = []
    for path in inputs:
        path = Path(path)
        files.extend(iu.list_images(path) if path.is_dir() else [path])
    targets = output_names(files, "_sweep.png" if sweep else ".png")
    written = failed = 0
    skipped = []
    for f, name in targets.items():
        target = out / name
        if target.exists() and not overwrite:
            skipped.append(target)
            continue
        try:
            image = iu.load_image(f)
            if max_side:
                image = iu.resize_max_side(image, max_side)
            check_size(image, f)
        except iu.ImageError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        if sweep:
            frames = [stylize_array(net, image, w)
                      for w in strength_weights(len(names), np.linspace(0.0, 1.0, sweep))]
        elif tile:
            frames = [tiled_stylize(net, image, weights, tile, weight_map=weight_map)]
        elif weight_map is not None:
            frames = [stylize_map(net, image, weight_map)]
        else:
            frames = [stylize_array(net, image, weights)]
        if not all(np.isfinite(fr).all() for fr in frames):  # not a black picture and exit 0
            print(f"error: {f}: the network's output is not finite (its weights overflow); not written",
                  file=sys.stderr)
            failed += 1
            continue
        if keep_color:
            frames = [preserve_color(fr, image) for fr in frames]
        iu.save_image(target, iu.image_grid(frames, cols=len(frames), pad=0) if sweep else frames[0])
        print(f"wrote {target}")
        written += 1
    return written, failed, skipped


# --------------------------------------------------------------------------------------------------------------------
# Huge images: overlapping tiles that share the whole image's instance-norm statistics

def _ramp(n: int, overlap: int, start: bool, end: bool) -> np.ndarray:
    """1 inside, rising linearly over `overlap` pixels at an edge that another tile overlaps."""
    w = np.ones(n, np.float32)
    if overlap > 0:
        ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        if start:
            w[:overlap] = np.minimum(w[:overlap], ramp)
        if end:
            w[-overlap:] = np.minimum(w[-overlap:], ramp[::-1])
    return w


def _starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def tiled_stylize(net, image: np.ndarray, weights, tile: int, overlap: int | None = None, margin: int = 32,
                  stats_max_side: int = 1024, weight_map: np.ndarray | None = None) -> np.ndarray:
    """Stylize an image of any size in overlapping `tile` x `tile` pieces blended with linear ramps.

    Instance norm normalises by each input's own statistics, so tiles processed on their own would each get a
    different look. A first pass over the whole image (or, when its longer side exceeds `stats_max_side`, over a
    copy shrunk to that size) records every norm layer's statistics; every tile is then normalised with those.
    Each tile also sees `margin` pixels of real context on every side, cropped away afterwards. With `weight_map`
    [H, W, S] the weights vary per pixel (stylize_map): the probe records the statistics of each level the map
    needs, and each tile mixes them per pixel."""
    h, w = image.shape[:2]
    overlap = tile // 4 if overlap is None else overlap
    probe = image if max(h, w) <= stats_max_side else iu.resize_max_side(image, stats_max_side)
    if weight_map is not None:
        weight_map, levels, coeffs = prepare_map(weight_map, h, w)
        level_stats = level_statistics(net, probe, levels)
        weights = levels[0]

        def mode(t0, t1, l0, l1):
            return per_pixel_weights(net, weight_map[t0:t1, l0:l1], level_stats, coeffs[t0:t1, l0:l1])
    else:
        with recording_statistics(net) as stats:
            stylize_array(net, probe, weights)

        def mode(*_):
            return fixed_statistics(net, stats)
    out = np.zeros((h, w, 3), np.float32)
    total = np.zeros((h, w, 1), np.float32)
    stride = max(1, tile - overlap)
    for top in _starts(h, tile, stride):
        for left in _starts(w, tile, stride):
            bottom, right = min(top + tile, h), min(left + tile, w)
            t0, l0 = max(0, top - margin), max(0, left - margin)
            t1, l1 = min(h, bottom + margin), min(w, right + margin)
            with mode(t0, t1, l0, l1):
                piece = stylize_array(net, image[t0:t1, l0:l1], weights)
            piece = piece[top - t0:top - t0 + bottom - top, left - l0:left - l0 + right - left]
            wy = _ramp(bottom - top, overlap, top > 0, bottom < h)
            wx = _ramp(right - left, overlap, left > 0, right < w)
            weight = (wy[:, None] * wx[None, :])[..., None]
            out[top:bottom, left:right] += piece * weight
            total[top:bottom, left:right] += weight
    return out / np.maximum(total, 1e-8)


# --------------------------------------------------------------------------------------------------------------------
# Export

def serving_module(net, num_styles: int):
    """A tf.Module whose `serve` takes `image` [1, H, W, 3] float32 in [0,1] (any H, W) and `weights` [num_styles]
    float32 and returns {"image": [1, H, W, 3]}; with two or more styles also `serve_map`, which takes `image` and
    `weight_map` [1, H, W, num_styles] (per-pixel weights summing to 1, at the image's size) and returns the same
    as `stylize --weights-map` (instance-norm statistics of fixed levels: MAP_LEVELS for two styles, each style
    alone for more, mixed per pixel; see map_levels)."""
    import tensorflow as tf

    module = tf.Module()
    module.net = net

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32, name="image"),
                                  tf.TensorSpec([num_styles], tf.float32, name="weights")])
    def serve(image, weights):
        return {"image": net({"image": image, "weights": weights[None]}, training=False)}

    module.serve = serve
    if num_styles < 2:
        return module
    levels = strength_weights(2, MAP_LEVELS) if num_styles == 2 else np.eye(num_styles, dtype=np.float32)

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32, name="image"),
                                  tf.TensorSpec([1, None, None, num_styles], tf.float32, name="weight_map")])
    def serve_map(image, weight_map):
        if num_styles == 2:  # linear interpolation between the levels: hat functions of the last style's weight
            gap = MAP_LEVELS[1] - MAP_LEVELS[0]
            coeffs = tf.stack([tf.nn.relu(1.0 - tf.abs(weight_map[..., 1] - t) / gap) for t in MAP_LEVELS], -1)
        else:
            coeffs = weight_map
        stats = []
        for w in levels:
            with recording_statistics(net) as level:
                net({"image": image, "weights": tf.constant(w[None])}, training=False)
            stats.append(level)
        with per_pixel_weights(net, weight_map, stats, coeffs):
            return {"image": net({"image": image, "weights": tf.constant(levels[:1])}, training=False)}

    module.serve_map = serve_map
    return module


EXPORT_RECORD = "export.json"  # what an export folder holds; its presence marks the folder as one of ours
EXPORT_FILES = ("saved_model", "stylizer.tflite")  # every name an export writes beside it
STAGING = ".export-*.tmp"  # an export's temporary folder inside --out (a killed export leaves one behind)


def export_target_problem(out: Path, overwrite: bool) -> str | None:
    """Why `--out` cannot take an export (None when it can): a file, a folder holding anything but an earlier
    export (nothing there is ours to replace), or an earlier export without --overwrite."""
    if out.exists() and not out.is_dir():
        return f"{out}: is a file; --out names a folder"
    if not out.is_dir() or not any(p for p in out.iterdir() if not p.match(STAGING)):
        return None
    if not (out / EXPORT_RECORD).is_file():
        return (f"{out}: is not empty and holds no earlier export ({EXPORT_RECORD}); give a new or empty folder, "
                "nothing in it is replaced")
    if not overwrite:
        return f"{out}: holds an earlier export; --overwrite replaces it (its own files only)"
    return None


def export(net, num_styles: int, out: Path, tflite: bool = False, overwrite: bool = False,
           names=None) -> list[Path]:
    """`out/saved_model` (signature `serving_default`, see serving_module), optionally `out/stylizer.tflite` (the
    same function with the weights frozen), and `out/export.json` (the style names and the files written). Nothing
    the export did not write is touched: a non-empty `out` must be an earlier export, and is replaced only with
    `overwrite`, file by file (each new file is built in a temp folder inside `out`, then renamed over the old one;
    the earlier export's files that this one does not write are removed). ValueError with one line otherwise."""
    import tensorflow as tf

    problem = export_target_problem(out, overwrite)
    if problem:
        raise ValueError(problem)
    iu.make_dirs(out)
    for stale in out.glob(STAGING):  # a killed export's temporary folder: ours, by its name
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", suffix=".tmp", dir=out))
    try:
        module = serving_module(net, num_styles)
        signatures = {"serving_default": module.serve}
        if hasattr(module, "serve_map"):
            signatures["serving_map"] = module.serve_map
        tf.saved_model.save(module, str(staging / "saved_model"), signatures=signatures)
        if tflite:
            from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

            with unfused_norms(net):  # TFLite has no fused batch norm in training mode
                # Fold the weights into constants: left as resource variables they are never initialised in a
                # bare interpreter, and every output is NaN.
                frozen = convert_variables_to_constants_v2(serving_module(net, num_styles).serve
                                                           .get_concrete_function())
            converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
            (staging / "stylizer.tflite").write_bytes(converter.convert())
        written = ["saved_model"] + (["stylizer.tflite"] if tflite else [])
        earlier = EXPORT_FILES if (out / EXPORT_RECORD).is_file() else ()  # only ever names export writes itself
        for name in written:
            new, old = staging / name, out / name
            if old.is_dir() and not old.is_symlink():
                old.replace(staging / f"old-{name}")  # out of the way, then the new one in its place
            new.replace(old)
        for name in set(earlier) - set(written):  # an earlier export's file that this one does not write
            old = out / name
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink(missing_ok=True)
        iu.atomic_write_json(out / EXPORT_RECORD, {"files": written, "num_styles": num_styles,
                                                   "style_names": list(names or [])})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out / name for name in written]
