"""How far are random crops of a painting from the painting, in the Grams a stylizer is judged by? For each style
image (resized so its shorter side is --size, as the stylizer's targets are), the relative error
||mean G(crops) - G(whole)|| / ||G(whole)|| per style layer, for crops of each --crop-sizes size cut with and without
the VAE's augmentation (style_images.training_crops: its scale jitter, flips and 90-degree rotations).

    python benchmarks/crop_grams.py [--style A.jpg --style B.jpg] [--size 128] [--crop-sizes 64,128] [--crops 64]

It separates what no crop-trained route (a VAE on crops, or real crops) can reach from what a VAE gets wrong: an
error here is the floor for a stylizer trained on crops and judged against the whole painting. The last line is
JSON: {style: {"SIZE augmented|plain": {layer: error}}}.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import image_utilities as iu  # noqa: E402

SHARED_STYLES = ROOT.parent / "shared" / "data" / "styles"


def crop_errors(image: np.ndarray, crop_sizes, crops: int, vgg, layers, seed: int = 0) -> dict:
    """{"SIZE CUT": {layer: relative error of the crops' mean Gram against the whole image's}}."""
    import stylizer_data as D
    from vae_keras import VAEConfig
    from style_images import training_crops

    whole = D.compute_grams([image], vgg, layers)
    rng = np.random.default_rng(seed)
    out = {}
    for size in crop_sizes:
        cuts = {"augmented": lambda: list(training_crops(image, VAEConfig(size=size), rng, crops)),
                "plain": lambda: [iu.random_crop(image, size, rng, scale=(1.0, 1.0), flip=False) for _ in range(crops)]}
        for cut, cut_crops in cuts.items():
            grams = D.compute_grams(cut_crops(), vgg, layers)
            out[f"{size} {cut}"] = {
                n: float(np.linalg.norm(grams[n].mean(0) - whole[n][0]) / np.linalg.norm(whole[n][0]))
                for n in layers}
    return out


def main(argv=None) -> int:
    import builtin_images
    import stylizer_data as D
    from perceptual import vgg_features

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--style", action="append", default=[], metavar="IMG",
                    help="style images (default: Starry Night and The Scream from ../shared/data/styles, else the "
                         "built-in styles)")
    ap.add_argument("--size", type=int, default=128, help="shorter side of each style image (the stylizer's --size)")
    ap.add_argument("--crop-sizes", default="64,128", help="comma-separated crop sizes")
    ap.add_argument("--crops", type=int, default=64, help="random crops per size and cut")
    args = ap.parse_args(argv)
    try:
        sizes = [int(s) for s in args.crop_sizes.split(",")]
    except ValueError:
        return iu.fail(f"--crop-sizes takes comma-separated integers, got '{args.crop_sizes}'")
    if args.crops < 1 or args.size < 32 or min(sizes) < 32:
        return iu.fail("need --crops >= 1, --size >= 32 and crop sizes >= 32")
    paths = args.style or [str(SHARED_STYLES / n) for n in ("starry_night.jpg", "the_scream.jpg")
                           if (SHARED_STYLES / n).exists()]
    if paths:
        try:
            images = {Path(p).stem: iu.resize_short_side(iu.load_image(p), args.size) for p in paths}
        except iu.ImageError as e:
            return iu.fail(str(e))
    else:  # square built-in styles: a crop of --size is the whole image
        images = builtin_images.default_styles(args.size)
    layers = list(D.STYLE_LAYERS)
    vgg = vgg_features(layers, name="crop_grams_vgg")
    report = {}
    print(f"relative error of the mean Gram of {args.crops} random crops against the whole image ({args.size} px "
          f"shorter side)\n\n| style | crops | " + " | ".join(layers) + " |\n|---|---|" + "---|" * len(layers))
    for name, image in images.items():
        report[name] = crop_errors(image, sizes, args.crops, vgg, layers)
        for cut, errors in report[name].items():
            print(f"| {name} | {cut} | " + " | ".join(f"{errors[n]:.3f}" for n in layers) + " |")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
