"""Which reconstruction loss gives the sharpest VAE? Trains mse, bce and perceptual VAEs with the same budget, data
and seed, then reports LPIPS (lower is better) of their reconstructions of held-out crops, and time per step.

    python benchmarks/vae_recon.py                       # styles and held-out images from ../shared/data
    python benchmarks/vae_recon.py --size 64 --steps 400 --batch-size 16 --held-out DIR --style A --style B

Default training styles: starry_night and the_scream from ../shared/data/styles (the built-in styles when that folder
is absent); held-out crops come from every other image under ../shared/data (or --held-out DIR). Target: perceptual
reconstruction LPIPS <= 0.8x that of mse.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import builtin_images  # noqa: E402
import image_utilities as iu  # noqa: E402
import vae_keras as V  # noqa: E402
from perceptual import lpips_distance  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=iu.HelpFormatter)
    ap.add_argument("--style", action="append", default=[], metavar="IMG",
                    help="a training style image, repeatable (default: starry_night and the_scream, else built-in)")
    ap.add_argument("--held-out", type=Path, help="folder of images for held-out crops (default: ../shared/data)")
    ap.add_argument("--size", type=int, default=64, help="VAE crop size")
    ap.add_argument("--latent-dim", type=int, default=64, help="VAE latent dimensions")
    ap.add_argument("--steps", type=int, default=400, help="training steps of each VAE")
    ap.add_argument("--batch-size", type=int, default=16, help="VAE batch")
    ap.add_argument("--crops", type=int, default=32, help="held-out crops to reconstruct")
    ap.add_argument("--losses", default="mse,bce,perceptual", help="VAE reconstruction losses to compare")
    ap.add_argument("--out", type=Path, help="write the table here as JSON (default: print it only)")
    args = ap.parse_args(argv)

    defaults = (SHARED / "styles" / "starry_night.jpg", SHARED / "styles" / "the_scream.jpg")
    styles = args.style or [str(p) for p in defaults if p.exists()]
    if args.held_out:
        held = iu.list_images(args.held_out)
    elif SHARED.exists():
        held = [p for p in iu.list_images(SHARED) if str(p) not in styles]
    else:
        held = []
    rng = np.random.default_rng(7)
    held_images = [iu.resize_max_side(iu.load_image(p), 4 * args.size) for p in held]
    if not held_images:  # no shared data: hold out crops of procedural scenes instead
        held_images = list(builtin_images.default_content(4 * args.size).values())
    crops = np.stack([iu.random_crop(held_images[i % len(held_images)], args.size, rng, scale=(1.0, 2.0))
                      for i in range(args.crops)])
    print(f"training styles: {[Path(s).name for s in styles] or 'built-in'}; {len(crops)} held-out crops from "
          f"{len(held_images)} images; size {args.size}, {args.steps} steps, batch {args.batch_size}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for loss in args.losses.split(","):
            run = Path(tmp) / loss
            # the original design's VAE (seed decoder, no continuum terms), one reconstruction loss each
            cmd = ["train", "--recipe", "seed-original", "--run-dir", str(run), "--size", str(args.size),
                   "--set", f"latent_dim={args.latent_dim}", "--steps", str(args.steps), "--batch-size",
                   str(args.batch_size), "--set", f"recon={loss}", "--log-every", str(max(1, args.steps // 4)),
                   "--snapshot-every", str(args.steps), "--checkpoint-every", str(args.steps),
                   "--set", "encode_crops=8"]
            for s in styles:
                cmd += ["--style", s]
            t0 = time.perf_counter()
            if V.main(cmd) != 0:
                return 1
            seconds = time.perf_counter() - t0
            vae, _ = V.load_vae(run)
            recon = vae.reconstruct(crops)
            d = lpips_distance(crops, recon)
            rows.append({"recon": loss, "lpips": float(np.mean(d)), "lpips_sem": float(np.std(d) / np.sqrt(len(d))),
                         "mse": float(np.mean((recon - crops) ** 2)), "s_per_step": seconds / args.steps})
            iu.save_image(ROOT / "runs" / "bench" / f"vae_recon_{loss}.png",
                          iu.image_grid(list(crops[:8]) + list(recon[:8]), cols=8))
    base = next((r for r in rows if r["recon"] == "mse"), rows[0])
    print("\n| recon | LPIPS (held-out) | pixel MSE | s/step | LPIPS vs mse |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['recon']} | {r['lpips']:.4f} ± {r['lpips_sem']:.4f} | {r['mse']:.4f} | {r['s_per_step']:.3f} | "
              f"{r['lpips'] / base['lpips']:.2f}x |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
