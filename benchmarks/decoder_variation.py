"""Where does a VAE's sample variety come from: the code, or the decoder's noise image? For each style it decodes
`--n` images three ways and prints the mean pairwise LPIPS among them: codes drawn from the style's Gaussian
(latents.npz, as style_sampler.py draws them) under one noise image; the style's mean code under `--n` noise
images; and both varying, as the sampler does. A noise input the decoder ignores reads 0.000 in the second column
(a VAE without a noise input reads "-" there and in the third). It also lists the latent dimensions whose posterior
std sits at the encoder's clamp (exp(6/2) ~ 20): dimensions the encoder fills with noise rather than with what the
crop looks like, which the decoder then uses as its source of variety; next to them, the codes' spread (the mean std
of the crops' posterior means) over the other dimensions.

    python benchmarks/decoder_variation.py --vae runs/demo/vae [--n 24] [--seed 0]

Last line: JSON {style: {"codes": lpips, "noise": lpips or null, "both": lpips or null, "noise_dims": [...],
"code_spread": x}}.
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
import vae_keras as V  # noqa: E402
import vae_latents as L  # noqa: E402
from vae_model import LOGVAR_RANGE  # noqa: E402

# A dimension "at the clamp": its posterior std, averaged over the style's crops, within 10% of the largest the
# encoder can give.
CLAMP_FRACTION = 0.9


def clamped_dims(code_std: np.ndarray) -> np.ndarray:
    """Which latent dimensions sit at the posterior clamp, from one style's per-crop posterior stds [crops, D]."""
    return code_std.mean(0) >= CLAMP_FRACTION * float(np.exp(0.5 * LOGVAR_RANGE[1]))


def measure(vae, config, latents: dict, n: int = 24, seed: int = 0) -> dict:
    """Per style: mean pairwise LPIPS of `n` decodes with the codes varying, the noise varying, and both (None for
    the last two when the decoder has no noise input); and the dimensions at the posterior clamp (from latents.npz's
    per-crop `code_std`, when it has them) with the codes' spread over the others."""
    rng = np.random.default_rng(seed)
    channels = max(1, config.noise_channels)
    report = {}
    for s, name in enumerate(latents["styles"]):
        mean = latents["mean"][s].astype(np.float64)
        codes = (mean + L.latent_spread(latents, s, rng.standard_normal((n, len(mean))))).astype(np.float32)
        one = np.repeat(V.decoder_noise(rng, 1, config.size, channels), n, axis=0)
        many = V.decoder_noise(rng, n, config.size, channels)
        at_mean = np.repeat(mean[None].astype(np.float32), n, axis=0)

        def diversity(z, noise):
            return float(F.pairwise_lpips(vae.decode(z, noise if config.noise_channels else None)).mean())

        row = {"codes": diversity(codes, one), "noise": None, "both": None}
        if config.noise_channels:
            row.update(noise=diversity(at_mean, many), both=diversity(codes, many))
        if "code_std" in latents:
            noisy = clamped_dims(latents["code_std"][s])
            row["noise_dims"] = [int(k) for k in np.flatnonzero(noisy)]
            spread = latents["codes"][s].std(0)[~noisy]
            row["code_spread"] = float(spread.mean()) if spread.size else 0.0
        report[str(name)] = row
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--vae", type=Path, required=True, help="a vae_keras.py run folder with latents.npz")
    ap.add_argument("--n", type=int, default=24, help="decodes per style and way")
    ap.add_argument("--seed", type=int, default=0, help="seed of the codes and noise images")
    args = ap.parse_args(argv)
    if args.n < 2:
        return F.iu.fail(f"--n {args.n}: need at least 2 decodes to compare")
    if args.seed < 0:
        return F.iu.fail(f"--seed {args.seed}: must be 0 or more")
    try:
        vae, config = V.load_vae(args.vae)
        latents = L.load_latents(args.vae)
    except (V.RunError, ValueError) as e:
        return F.iu.fail(str(e))
    report = measure(vae, config, latents, args.n, args.seed)
    print(f"{args.vae}: mean pairwise LPIPS of {args.n} decodes per style")
    print("| style | codes vary, one noise | mean code, noise varies | both vary | dims at the clamp | "
          "code spread (other dims) |")
    print("|---|---|---|---|---|---|")
    for name, r in report.items():
        dims = ", ".join(map(str, r.get("noise_dims", []))) or "-"
        spread = f"{r['code_spread']:.2f}" if "code_spread" in r else "-"
        noise, both = ("-" if r[k] is None else f"{r[k]:.3f}" for k in ("noise", "both"))
        print(f"| {name} | {r['codes']:.3f} | {noise} | {both} | {dims} | {spread} |")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
