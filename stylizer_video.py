"""Stylized video: every frame of a clip at its strength (or a strength map), made temporally consistent with
`stylize --video --stable MODE` (stylizer_run.STABLE_MODES; video_stability.py measures each):

- stats: instance-norm statistics smoothed across frames (stylizer_net.smoothed_statistics);
- flow: where the optical flow between the input frames is reliable (DIS, forward-backward check), blend the
  previous output, warped to this frame (bicubic), into this one (FLOW_BLEND of it) and give the blend the contrast
  of this frame's own result (match_moments);
- both: the two together.

The optical flow, warping and occlusion helpers live here too.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import cv2
import numpy as np

import image_utilities as iu
from stylizer_run import STABLE_MODES

# stylizer_apply and stylizer_net import TensorFlow: the functions that run the net import them, so the flow helpers
# below load without it.


FLOW_BLEND, STATS_MOMENTUM = 0.6, 0.8


def stylize_frames(net, frames, weights_at, stable: str = "none", weight_map=None, blend: float = FLOW_BLEND,
                   momentum: float = STATS_MOMENTUM):
    """Yield the stylized frames of an iterable of frames (float RGB, one size): frame i at weights `weights_at(i)`,
    or at per-pixel weights `weight_map`, made temporally consistent as `stable` says (STABLE_MODES). With a map
    the statistics come from its levels (stylize_map), so `stats` smoothing does not apply to it."""
    from stylizer_apply import prepare_map, stylize_array, stylize_prepared
    from stylizer_net import smoothed_statistics

    if stable not in STABLE_MODES:
        raise ValueError(f"unknown --stable mode '{stable}': use {', '.join(STABLE_MODES)}")
    smooth = stable in ("stats", "both") and weight_map is None
    previous = prepared = None
    with smoothed_statistics(net, momentum) if smooth else contextlib.nullcontext():
        for i, frame in enumerate(frames):
            if weight_map is None:
                out = stylize_array(net, frame, weights_at(i))
            else:  # a static map: fitted and its levels found once, for the clip's frame size
                prepared = prepared or prepare_map(weight_map, *frame.shape[:2])
                out = stylize_prepared(net, frame, prepared)
            if stable in ("flow", "both") and previous is not None:
                back, forward = optical_flow(frame, previous[0]), optical_flow(previous[0], frame)
                trust = blend * reliable_flow(back, forward)[..., None]
                mixed = (1.0 - trust) * out + trust * warp(previous[1], back, cubic=True)
                out = match_moments(mixed, out)
            previous = (frame, out)
            yield out


def match_moments(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`image` with each channel's mean and standard deviation set to those of `reference`: blending two frames
    whose textures are not aligned stroke for stroke averages contrast away, which this gives back."""
    mean, std = image.mean((0, 1)), image.std((0, 1))
    return np.clip((image - mean) / np.maximum(std, 1e-6) * reference.std((0, 1)) + reference.mean((0, 1)), 0, 1)


def stylize_video(net, src: Path, dst: Path, weights_at, max_side: int | None = None, weight_map=None,
                  keep_color: bool = False, stable: str = "none") -> int:
    """Stylize every frame of `src` into `dst` (mp4) with the same frame count, size and fps. `weights_at(i, n)`
    gives the style weights of frame i of n, or `weight_map` [H, W, S] the same per-pixel weights for every frame
    (a static map, resized to the frames); `stable` as in stylize_frames. The file appears only when complete.
    Returns the frames written."""
    import cv2
    import keras

    from stylizer_apply import check_size, preserve_color

    cap = cv2.VideoCapture(str(src))
    if not cap.isOpened():
        raise iu.ImageError(src, "cannot open as a video")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    iu.make_dirs(dst.parent)
    tmp = dst.with_name(f".{dst.stem}.partial{dst.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        cap.release()
        raise iu.ImageError(dst, "cannot write an mp4 here")
    bar = keras.utils.Progbar(n or None, unit_name="frame")
    written = 0

    last = []  # the input frame being stylized (for --preserve-color)

    def read():
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            rgb = frame[..., ::-1].astype(np.float32) / 255.0
            last[:] = [check_size(iu.resize_max_side(rgb, max_side) if max_side else rgb, src)]
            yield last[0]

    try:
        for result in stylize_frames(net, read(), lambda i: weights_at(i, max(n, i + 1)), stable, weight_map):
            if keep_color:
                result = preserve_color(result, last[0])
            if result.shape[:2] != (height, width):
                result = iu.resize(result, height, width)
            writer.write(np.ascontiguousarray(iu.to_uint8(result)[..., ::-1]))
            written += 1
            bar.update(written)
    except BaseException:  # a frame the net cannot take, Ctrl-C: no partial file is left behind
        writer.release()
        tmp.unlink(missing_ok=True)
        raise
    finally:
        cap.release()
        writer.release()
    if not written:
        tmp.unlink(missing_ok=True)
        raise iu.ImageError(src, "no frames could be read")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    Path(tmp).replace(dst)
    return written


def optical_flow(src: np.ndarray, dst: np.ndarray, method: str = "dis") -> np.ndarray:
    """Flow [H, W, 2] (x, y in pixels) from frame `src` to frame `dst` (float RGB): pixel p of `src` is seen at
    p + flow[p] in `dst`. `dis` (OpenCV's DIS, medium preset: fast) or `farneback` (OpenCV's Farneback)."""
    a, b = (cv2.cvtColor(iu.to_uint8(im), cv2.COLOR_RGB2GRAY) for im in (src, dst))
    if method == "dis":
        return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(a, b, None)
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 21, 5, 7, 1.5, 0)
    raise ValueError(f"unknown flow method '{method}': use dis or farneback")


def flow_targets(flow: np.ndarray) -> np.ndarray:
    """p + flow[p] for every pixel p = (x, y): where each pixel's flow lands, [H, W, 2] float32."""
    h, w = flow.shape[:2]
    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), -1)
    return grid + flow


def warp(image: np.ndarray, flow: np.ndarray, cubic: bool = False) -> np.ndarray:
    """Sample `image` at p + flow[p] (bilinear, or bicubic: less blur when warps repeat; edges replicated): with
    the flow from frame t to frame t-1, the previous frame's pixels moved to where they are in frame t."""
    where = flow_targets(flow)
    return cv2.remap(image.astype(np.float32), where[..., 0], where[..., 1],
                     cv2.INTER_CUBIC if cubic else cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def reliable_flow(back: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Where the flow `back` (frame t -> t-1) can be trusted, as a float mask [H, W]: the point it lands on is
    inside frame t-1 and the flow `forward` (t-1 -> t) there leads back (forward-backward check of Sundaram et al.
    2010, the criterion Ruder et al. 2016 use for occlusions)."""
    h, w = back.shape[:2]
    where = flow_targets(back)
    inside = (where[..., 0] >= 0) & (where[..., 0] <= w - 1) & (where[..., 1] >= 0) & (where[..., 1] <= h - 1)
    there = warp(forward, back)
    mismatch = np.sum((there + back) ** 2, -1)
    scale = np.sum(there ** 2, -1) + np.sum(back ** 2, -1)
    return (inside & (mismatch <= 0.01 * scale + 0.5)).astype(np.float32)
