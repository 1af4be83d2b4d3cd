"""Do a VAE's reconstructions in inference mode (how the sampler runs it: the batch norms' stored statistics) match
those in training mode (each batch's own statistics, what the losses saw)? For `--crops` real crops of each style,
cut as training cuts them and encoded together in one mixed batch, it prints per mode (encoder, decoder) the mean
colour of each style's reconstructions and their relative Gram error ||mean G(recon) - G_style|| / ||G_A - G_B||
(sample_fidelity.py's Grams, against 128 other real crops). With --recalibrate the run's statistics are
first recomputed in memory (vae_keras.recalibrate_norms; the run is not changed), to see what the fix gives.

    python benchmarks/norm_modes.py --vae runs/demo/vae [--recalibrate] [--crops 16]

Last line: JSON {"train_train": [err_A, err_B], "infer_infer": [...], ...}.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import sample_fidelity as F  # noqa: E402
import style_images  # noqa: E402
import vae_keras as V  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--vae", type=Path, required=True, help="a vae_keras.py run folder")
    ap.add_argument("--crops", type=int, default=16, help="real crops per style, encoded in one mixed batch")
    ap.add_argument("--recalibrate", action="store_true", help="recompute the batch norms' statistics first")
    args = ap.parse_args(argv)
    import tensorflow as tf

    from perceptual import vgg_features

    try:
        vae, config = V.load_vae(args.vae)
        styles = style_images.load_styles(config.styles, config.size, config.style_size)
    except (F.iu.ImageError, V.RunError, ValueError) as e:
        return F.iu.fail(str(e))
    if args.recalibrate:
        V.recalibrate_norms(vae, styles, config)
    vgg = vgg_features(list(F.GRAM_LAYERS), name="norm_modes_vgg")
    reference = [F.gram_vectors(r, vgg)[0].mean(0) for r in F.real_crops(styles, config, 128, seed=777)]
    scale = np.linalg.norm(reference[0] - reference[-1])
    crops = F.real_crops(styles, config, args.crops, seed=5)
    batch = np.concatenate(crops)
    noise = V.decoder_noise(np.random.default_rng(1), len(batch), config.size, config.noise_channels)
    report = {}
    print(f"{args.vae}: {args.crops} crops per style; real mean colours "
          + "  ".join(f"{c.mean((0, 1, 2)).round(2)}" for c in crops))
    # Inference-mode calls first: a training-mode call moves the stored statistics (1% toward its batch).
    codes = {mode: tf.cast(vae.encoder(batch, training=mode == "train")["mean"], tf.float32)
             for mode in ("infer", "train")}
    recons = {}
    for decoder_mode in ("infer", "train"):
        for encoder_mode in ("train", "infer"):
            z = codes[encoder_mode]
            inputs = [z, tf.constant(noise)] if config.noise_channels else z
            logits = vae.decoder(inputs, training=decoder_mode == "train")
            recons[encoder_mode, decoder_mode] = tf.sigmoid(tf.cast(logits, tf.float32)).numpy()
    for encoder_mode in ("train", "infer"):
        for decoder_mode in ("train", "infer"):
            recon = recons[encoder_mode, decoder_mode]
            grams = F.gram_vectors(recon, vgg)[0]
            errors, colours = [], []
            for k, ref in enumerate(reference):
                part = slice(k * args.crops, (k + 1) * args.crops)
                errors.append(float(np.linalg.norm(grams[part].mean(0) - ref) / scale))
                colours.append(recon[part].mean((0, 1, 2)).round(2))
            report[f"{encoder_mode}_{decoder_mode}"] = errors
            print(f"encoder {encoder_mode:5s} decoder {decoder_mode:5s}: Gram error "
                  + " / ".join(f"{e:.3f}" for e in errors) + "   mean colours " + "  ".join(map(str, colours)))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
