"""The built-in images: procedural styles and content made by code, so the pipeline runs from a fresh clone with no
downloads and nobody else's artwork. Deterministic at any size.

    python builtin_images.py --out res [--size 256]      # writes res/styles/, res/content/ and res/maps/

Styles: `honeycomb` (hexagonal wax cells) and `night_swirls` (brush strokes around vortices under a starry sky).
Content: the photographs matplotlib ships (when its sample data is installed) plus procedural landscapes.
Maps: `ramp`, a strength map for `stylizer.py stylize --strength-map`. And `camera_clip`, a synthetic video of a
still photo under a moving camera with its true motion, for measuring flicker.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np

import image_utilities as iu


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
    img = iu.to_uint8(canvas)
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


def procedural_scene(size: int, seed: int) -> np.ndarray:
    """A simple landscape: sky gradient, sun, hills and a few houses, for content that is not a texture."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    img = (1 - y) * np.array([0.45, 0.7, 0.95]) + y * np.array([0.85, 0.9, 0.95])
    img = iu.to_uint8(np.broadcast_to(img, (size, size, 3)).copy()).copy()
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
            out[Path(name).stem.lower()] = iu.square_crop(iu.load_image(path), size)
        except (iu.ImageError, OSError, ValueError):
            continue  # a matplotlib build without sample data still gets the procedural scenes
    for seed in range(3):
        out[f"scene_{seed}"] = procedural_scene(size, seed)
    return out


def camera_clip(photo: np.ndarray, frames: int = 24, size=(192, 256), seed: int = 0, noise: float = 0.02,
                jitter: float = 0.03) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A synthetic video of a still photo seen by a moving camera: a slow pan, a zoom in and a little rotation, plus
    per-frame sensor noise (Gaussian, std `noise`) and brightness jitter (gain 1 +- `jitter`), at `size` (h, w).
    Returns the frames and, for t >= 1, the true flow from frame t to frame t-1 (from the known camera path;
    points that come from outside frame t-1 are marked NaN), so flicker can be measured without estimating motion."""
    h, w = size
    rng = np.random.default_rng(seed)
    src = iu.resize(photo, int(h * 1.6), int(w * 1.6))
    sh, sw = src.shape[:2]

    def camera(t):  # 2x3 affine: photo pixel -> frame pixel
        k = t / max(frames - 1, 1)
        scale, angle = 1.0 + 0.15 * k, 3.0 * k
        centre = (sw / 2 + 0.12 * sw * (k - 0.5), sh / 2 + 0.05 * sh * (k - 0.5))
        m = cv2.getRotationMatrix2D(centre, angle, scale)
        m[:, 2] += (w / 2 - centre[0], h / 2 - centre[1])
        return np.vstack([m, [0, 0, 1]])

    clip, flows = [], []
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    points = np.stack([xs, ys, np.ones_like(xs)], -1)
    for t in range(frames):
        a = camera(t)
        frame = cv2.warpAffine(src, a[:2], (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        frame = frame * (1.0 + rng.uniform(-jitter, jitter)) + rng.normal(0.0, noise, frame.shape)
        clip.append(np.clip(frame, 0.0, 1.0).astype(np.float32))
        if t:
            back = points @ (camera(t - 1) @ np.linalg.inv(a)).T  # frame t pixel -> frame t-1 pixel
            flow = (back[..., :2] - points[..., :2]).astype(np.float32)
            outside = (back[..., 0] < 0) | (back[..., 0] > w - 1) | (back[..., 1] < 0) | (back[..., 1] > h - 1)
            flow[outside] = np.nan
            flows.append(flow)
    return clip, flows


def default_maps(size: int) -> dict[str, np.ndarray]:
    """Strength maps for `stylize --strength-map`: `ramp` is 0 (the first style) on the left third, rises linearly
    across the middle third and is 1 (the last style) on the right third."""
    x = (np.arange(size, dtype=np.float32) + 0.5) / size
    row = np.clip((x - 1 / 3) * 3, 0.0, 1.0)
    return {"ramp": np.repeat(np.tile(row, (size, 1))[..., None], 3, -1)}


def write_defaults(out_dir, size: int = 256) -> dict[str, list[Path]]:
    """Write the default styles to OUT/styles, the default content to OUT/content and the strength maps to
    OUT/maps (idempotent)."""
    out_dir = Path(out_dir)
    written = {"styles": [], "content": [], "maps": []}
    for kind, images in (("styles", default_styles(size)), ("content", default_content(size)),
                         ("maps", default_maps(size))):
        for name, im in images.items():
            path = out_dir / kind / f"{name}.png"
            if not path.exists():
                iu.save_image(path, im)
            written[kind].append(path)
    return written



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=iu.HelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "res",
                        help="folder to write styles/ and content/ into")
    parser.add_argument("--size", type=int, default=256, help="side of every (square) image in pixels")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    written = write_defaults(args.out, args.size)
    print(f"wrote {len(written['styles'])} styles, {len(written['content'])} content images and "
          f"{len(written['maps'])} strength maps under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
