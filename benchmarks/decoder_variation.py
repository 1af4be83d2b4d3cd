"""Where does a VAE's sample variety come from: the code, or the decoder's noise image? For each style it decodes
`--n` images three ways and prints the mean pairwise LPIPS among them: codes drawn from the style's Gaussian
(latents.npz, as style_sampler.py draws them) under one noise image; the style's mean code under `--n` noise
images; and both varying, as the sampler does. A noise input the decoder ignores reads 0.000 in the second column.
It also lists the latent dimensions whose posterior std sits at the encoder's clamp (exp(6/2) ~ 20): dimensions the
encoder fills with noise rather than with what the crop looks like, which the decoder then uses as its source of
variety (the codes' own spread is printed next to them).

    python benchmarks/decoder_variation.py --vae runs/demo/vae [--n 24] [--seed 0]

Last line: JSON {style: {"codes": lpips, "noise": lpips, "both": lpips, "noise_dims": [...], "code_spread": x}}.
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
from vae_model import LOGVAR_RANGE, decoder_noise  # noqa: E402

# A dimension "at the clamp": its posterior std, averaged over the style's crops, within 10% of the largest the
# encoder can give.
CLAMP_FRACTION = 0.9


def measure(vae, config, latents: dict, n: int = 24, seed: int = 0) -> dict:
    """Per style: mean pairwise LPIPS of `n` decodes with the codes varying, the noise varying, and both; and the
    dimensions at the posterior clamp (from latents.npz's per-crop `code_std`, when it has them)."""
    rng = np.random.default_rng(seed)
    channels = max(1, config.noise_channels)
    largest_std = float(np.exp(0.5 * LOGVAR_RANGE[1]))
    report = {}
    for s, name in enumerate(latents["styles"]):
        mean = latents["mean"][s].astype(np.float64)
        factor = L.covariance_factor(latents["cov"][s]) if "cov" in latents else np.diag(latents["std"][s])
        codes = (mean + rng.standard_normal((n, len(mean))) @ factor.T).astype(np.float32)
        one = np.repeat(decoder_noise(rng, 1, config.size, channels), n, axis=0)
        many = decoder_noise(rng, n, config.size, channels)
        at_mean = np.repeat(mean[None].astype(np.float32), n, axis=0)

        def diversity(z, noise):
            return float(F.pairwise_lpips(vae.decode(z, noise if config.noise_channels else None)).mean())

        row = {"codes": diversity(codes, one), "noise": diversity(at_mean, many), "both": diversity(codes, many)}
        if "code_std" in latents:
            std = latents["code_std"][s].mean(0)
            noisy = std >= CLAMP_FRACTION * largest_std
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
    try:
        vae, config = V.load_vae(args.vae)
        latents = L.load_latents(args.vae)
    except (V.RunError, ValueError) as e:
        return F.iu.fail(str(e))
    report = measure(vae, config, latents, args.n, args.seed)
    print(f"{args.vae}: mean pairwise LPIPS of {args.n} decodes per style")
    print("| style | codes vary, one noise | mean code, noise varies | both vary | dims at the clamp | code spread |")
    print("|---|---|---|---|---|---|")
    for name, r in report.items():
        dims = ", ".join(map(str, r.get("noise_dims", []))) or "-"
        spread = f"{r['code_spread']:.2f}" if "code_spread" in r else "-"
        print(f"| {name} | {r['codes']:.3f} | {r['noise']:.3f} | {r['both']:.3f} | {dims} | {spread} |")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
