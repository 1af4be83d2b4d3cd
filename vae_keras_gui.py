"""Interactive viewer of VAE interpolations between two images.

    python vae_keras_gui.py --vae runs/vae a.jpg b.jpg [--points 8] [--interp linear|slerp]
    python vae_keras_gui.py --vae runs/vae a.jpg b.jpg --save strip.png     # no display needed

The window shows the two inputs (click one to choose the crop that is encoded), their reconstructions, a slider t in
[0, 1] with the decoded interpolation, and a strip of --points decodes from A to B. `--save` renders the strip with
matplotlib's Agg backend and exits. Holds: Interpolator (the state), save_strip, build_window (testable without a
display), main.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import image_utilities as iu
from style_images import at_training_scale
from vae_keras import load_vae
from vae_model import interpolate


class Interpolator:
    """The state behind the window: two source images, the crop chosen in each, and their encodings."""

    def __init__(self, vae, config, image_a, image_b, points: int, interp: str):
        self.vae, self.size, self.points, self.interp = vae, config.size, points, interp
        self.images = [at_training_scale(im, config.size, config.style_size) for im in (image_a, image_b)]
        self.centers = [(im.shape[0] // 2, im.shape[1] // 2) for im in self.images]
        self.crops = [None, None]
        self.z = [None, None]
        for i in range(2):
            self.set_center(i, *self.centers[i])

    def set_center(self, which: int, row: float, col: float):
        """Crop `size` x `size` around (row, col), kept inside the image, and encode it (posterior mean)."""
        im = self.images[which]
        h, w = im.shape[:2]
        top = int(np.clip(round(row) - self.size // 2, 0, h - self.size))
        left = int(np.clip(round(col) - self.size // 2, 0, w - self.size))
        self.centers[which] = (top + self.size // 2, left + self.size // 2)
        self.crops[which] = im[top:top + self.size, left:left + self.size]
        self.z[which] = self.vae.encode(self.crops[which][None])[0][0]

    def crop_box(self, which: int):
        r, c = self.centers[which]
        return c - self.size // 2, r - self.size // 2

    def decode_at(self, ts):
        return self.vae.decode(interpolate(self.z[0], self.z[1], ts, self.interp))

    def strip(self):
        ts = np.linspace(0.0, 1.0, self.points)
        return ts, self.decode_at(ts)


def save_strip(state: Interpolator, out: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts, frames = state.strip()
    panels = [("A", state.crops[0])] + [(f"t={t:.2f}", f) for t, f in zip(ts, frames)] + [("B", state.crops[1])]
    fig, axes = plt.subplots(1, len(panels), figsize=(1.6 * len(panels), 1.9), dpi=100)
    for ax, (title, im) in zip(axes, panels):
        ax.imshow(np.clip(im, 0, 1))
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format=out.suffix.lstrip(".") or "png")
    plt.close(fig)
    iu.atomic_write_bytes(out, buf.getvalue())


def build_window(state: Interpolator):
    """The interactive figure; returns it with its parts (axes, slider, handlers) so it can be driven in tests."""
    import types

    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from matplotlib.widgets import Slider

    fig = plt.figure(figsize=(12, 6))
    fig.suptitle("click an input to choose its crop; drag the slider to interpolate")
    top = [fig.add_axes([0.02 + 0.196 * i, 0.45, 0.18, 0.42]) for i in range(5)]
    titles = ["input A", "input B", "reconstruction A", "reconstruction B", "t = 0.50"]
    slider = Slider(fig.add_axes([0.25, 0.38, 0.5, 0.03]), "t", 0.0, 1.0, valinit=0.5)
    strip_axes = [fig.add_axes([0.02 + i * 0.96 / state.points, 0.03, 0.96 / state.points - 0.005, 0.3])
                  for i in range(state.points)]
    for ax in top + strip_axes:
        ax.axis("off")
    boxes = []

    def redraw():
        for ax in top:
            ax.clear()
            ax.axis("off")
        boxes.clear()
        for i in range(2):
            top[i].imshow(state.images[i])
            x, y = state.crop_box(i)
            boxes.append(top[i].add_patch(Rectangle((x, y), state.size, state.size, fill=False, color="red")))
        recon = state.vae.reconstruct(np.stack(state.crops))
        top[2].imshow(recon[0])
        top[3].imshow(recon[1])
        top[4].imshow(state.decode_at([slider.val])[0])
        titles[4] = f"t = {slider.val:.2f}"
        for ax, title in zip(top, titles):
            ax.set_title(title)
        ts, frames = state.strip()
        for ax, t, im in zip(strip_axes, ts, frames):
            ax.clear()
            ax.imshow(im)
            ax.set_title(f"{t:.2f}", fontsize=8)
            ax.axis("off")
        fig.canvas.draw_idle()

    def on_click(event):
        for i in range(2):
            if event.inaxes is top[i] and event.xdata is not None:
                state.set_center(i, event.ydata, event.xdata)
                redraw()

    def on_slide(value):
        top[4].clear()
        top[4].imshow(state.decode_at([value])[0])
        top[4].set_title(f"t = {value:.2f}")
        top[4].axis("off")
        fig.canvas.draw_idle()

    fig.canvas.mpl_connect("button_press_event", on_click)
    slider.on_changed(on_slide)
    redraw()
    return types.SimpleNamespace(fig=fig, inputs=top[:2], interpolation=top[4], slider=slider, on_click=on_click)


def run_window(state: Interpolator):
    import matplotlib.pyplot as plt

    build_window(state)
    plt.show()


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=iu.HelpFormatter)
    ap.add_argument("--vae", type=Path, required=True, help="a trained vae_keras.py run folder")
    ap.add_argument("image_a", type=Path, help="the image at t = 0")
    ap.add_argument("image_b", type=Path, help="the image at t = 1")
    ap.add_argument("--points", type=int, default=8, help="decodes in the strip, t = 0 ... 1 inclusive")
    ap.add_argument("--interp", choices=("linear", "slerp"), default="linear",
                    help="path between the two latents: straight line or great circle")
    ap.add_argument("--save", type=Path, help="render the strip to this PNG and exit, no window (default: open one)")
    ap.set_defaults(run=interpolate_command)
    return ap


def interpolate_command(args) -> int:
    if args.points < 2:
        return iu.fail("--points must be at least 2")
    vae, config = load_vae(args.vae)
    a, b = iu.load_image(args.image_a), iu.load_image(args.image_b)
    state = Interpolator(vae, config, a, b, args.points, args.interp)
    if args.save:
        save_strip(state, args.save)
        print(f"wrote {args.save}")
        return 0
    run_window(state)
    return 0


def main(argv=None) -> int:
    return iu.run_main(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
