"""latents.npz, the per-style latent Gaussians the sampler draws from: written by `vae_keras.py train` (at the end)
and `vae_keras.py encode`, read by style_sampler.py.

Arrays: `styles` [S] names, `mean` [S, D] and `std` [S, D] of each style's posterior means over random crops,
`cov` [S, D, D] the covariance of its aggregate posterior (VAEs trained since 2026-11-29; the sampler falls back to
`std` without it), `crops` how many crops per style, and `codes` [S, crops, D] / `code_std` [S, crops, D] each crop's
posterior mean and std (written since `style_sampler.py --draw posterior`, which draws from them).
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

import image_utilities as iu
from run_config import RunError
from style_images import training_crops


def encode_styles(vae, styles, names, config, crops: int, batch_size: int = 32) -> dict:
    """Each style's codes over `crops` random crops, summarised as a Gaussian: mean and per-dimension std of the
    posterior means, and the full covariance of the aggregate posterior. The sampler draws from the full covariance:
    codes of real crops are correlated across dimensions, and independent draws per dimension land off the codes
    the decoder has seen."""
    rng = np.random.default_rng([config.seed, 424242])
    means, stds, covs, codes, code_stds = [], [], [], [], []
    for style in styles:
        mus, variances = [], []
        for start in range(0, crops, batch_size):
            n = min(batch_size, crops - start)
            batch = training_crops(style, config, rng, n)
            mean, logvar = vae.encode(batch)
            mus.append(mean)
            variances.append(np.exp(logvar))
        mus = np.concatenate(mus).astype(np.float64)
        means.append(mus.mean(0))
        stds.append(mus.std(0))
        # The aggregate posterior: the spread of the codes plus each code's own posterior variance, which the
        # decoder also saw in training (z = mean + sigma * eps).
        variances = np.concatenate(variances)
        posterior = variances.astype(np.float64).mean(0)
        covs.append(np.atleast_2d(np.cov(mus, rowvar=False, bias=True)) + np.diag(posterior))
        codes.append(mus)
        code_stds.append(np.sqrt(variances))
    return {"styles": np.array(names), "mean": np.stack(means).astype(np.float32),
            "std": np.stack(stds).astype(np.float32), "cov": np.stack(covs).astype(np.float32),
            "crops": np.int64(crops), "codes": np.stack(codes).astype(np.float32),
            "code_std": np.stack(code_stds).astype(np.float32)}


def latent_spread(latents: dict, k: int, e: np.ndarray) -> np.ndarray:
    """Style k's deviation from its mean code for standard normal draws `e` ([D], or [n, D]): L e with L L^T its
    covariance (`cov`), or its per-dimension `std` times e for older files."""
    if "cov" not in latents:
        return latents["std"][k] * e
    return (covariance_factor(latents["cov"][k]) @ np.asarray(e).T).T


def covariance_factor(cov: np.ndarray) -> np.ndarray:
    """A matrix L with L L^T = cov (a symmetric square root, so a rank-deficient covariance works too)."""
    w, v = np.linalg.eigh(np.asarray(cov, np.float64))
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def save_latents(run_dir, latents: dict) -> Path:
    return iu.atomic_write_npz(Path(run_dir) / "latents.npz", latents)


def load_latents(run_dir) -> dict:
    path = Path(run_dir) / "latents.npz"
    if not path.exists():
        raise RunError(f"{path}: missing; run `python vae_keras.py encode --run-dir {run_dir}`")
    try:
        with np.load(path) as z:
            latents = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # a truncated npz is a broken zip
        raise RunError(f"{path}: unreadable ({e}); run `python vae_keras.py encode --run-dir {run_dir}` to write it "
                       "again") from None
    for key in ("styles", "mean", "std"):
        if key not in latents:
            raise RunError(f"{path}: has no '{key}' array")
    if latents["mean"].shape != latents["std"].shape or latents["mean"].shape[0] != len(latents["styles"]):
        raise RunError(f"{path}: inconsistent shapes {latents['mean'].shape} / {latents['std'].shape}")
    return latents
