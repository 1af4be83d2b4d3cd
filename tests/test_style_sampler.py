import hashlib
import json
import shutil

import numpy as np
import pytest

import builtin_images
import image_utilities as iu
import inspect_images
import style_sampler as S
import vae_keras as V
import vae_latents
import vae_model


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.suffix == ".png" or p.name == "manifest.jsonl"}


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    """A 4-step 64 px VAE on three styles (two built-in, one flat colour)."""
    d = tmp_path_factory.mktemp("vae")
    styles = []
    flat = np.full((96, 96, 3), [0.9, 0.1, 0.1], np.float32)
    for name, im in {**builtin_images.default_styles(96), "flat": flat}.items():
        styles += ["--style", str(d / f"{name}.png")]
        iu.save_image(d / f"{name}.png", im)
    run = d / "run"
    assert V.main(["train", "--recipe", "seed-original", "--run-dir", str(run), "--size", "64", "--set",
                   "latent_dim=16", "--set", "width=8",
                   "--steps", "4", "--batch-size", "2", "--seed", "1", "--set", "encode_crops=4", *styles]) == 0
    return run


def sample_args(vae, out, *extra):
    return ["--vae", str(vae), "--out", str(out), "--pairs", "3", "--points", "5", "--pair",
            "night_swirls,honeycomb", *extra]


def test_acceptance_files_manifest_weights(vae_run, tmp_path):
    out = tmp_path / "s"
    assert S.main(sample_args(vae_run, out)) == 0
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 15 and pngs[0] == "pair_00000_t0.000.png" and "pair_00002_t0.250.png" in pngs
    lines = [json.loads(l) for l in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 15
    for e in lines:
        assert sum(e["weights"]) == pytest.approx(1.0)
        assert e["weights"] == [pytest.approx(1 - e["t"]), pytest.approx(e["t"]), 0.0]
        assert e["styles"] == ["night_swirls", "honeycomb"] and (out / e["file"]).exists()
    assert iu.load_image(out / pngs[0]).shape == (64, 64, 3)
    record = json.loads((out / "sampler.json").read_text())
    assert record["pairs"] == 3 and record["style_names"] == ["night_swirls", "honeycomb", "flat"]
    assert S.verify(out) == []


def test_rerun_changes_nothing_and_resume_restores_bytes(vae_run, tmp_path):
    out = tmp_path / "s"
    assert S.main(sample_args(vae_run, out)) == 0
    before = digest(out)
    assert S.main(sample_args(vae_run, out)) == 0
    assert digest(out) == before
    (out / "pair_00001_t0.250.png").unlink()
    (out / "pair_00002_t1.000.png").unlink()
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(manifest.read_text().splitlines(keepends=True)[:-1]) + '{"file": "torn')
    assert S.main(["--out", str(out), "--verify"]) == 1
    assert S.main(sample_args(vae_run, out)) == 0
    assert digest(out) == before
    assert S.main(["--out", str(out), "--verify"]) == 0


@pytest.mark.parametrize("batch", ["5", "32"])
def test_shards_equal_single_run(vae_run, tmp_path, batch):
    single, sharded = tmp_path / "one", tmp_path / "two"
    assert S.main(sample_args(vae_run, single, "--batch-size", batch)) == 0
    assert S.main(sample_args(vae_run, sharded, "--batch-size", batch, "--shard", "1/2")) == 0
    if batch == "5":  # one pair per block: shard 1 owns pair 1 alone
        assert sorted({p.name[:10] for p in sharded.glob("*.png")}) == ["pair_00001"]
    assert S.main(sample_args(vae_run, sharded, "--batch-size", batch, "--shard", "0/2")) == 0
    assert digest(sharded) == digest(single)


def test_pair_regenerates_alone_and_slerp_endpoints(vae_run):
    latents = vae_latents.load_latents(vae_run)
    cfg = S.SamplerConfig(vae=str(vae_run), pairs=10, points=5, interp="slerp", pair="night_swirls,honeycomb")
    pairs = S.style_pairs([str(n) for n in latents["styles"]], cfg.pair)
    a, b, za, zb = S.pair_latents(latents, cfg, 7, pairs)
    again = S.pair_latents(latents, cfg, 7, pairs)
    np.testing.assert_array_equal(za, again[2])
    path = vae_model.interpolate(za, zb, np.linspace(0, 1, 5), "slerp")
    np.testing.assert_array_equal(path[0], za.astype(np.float32))
    np.testing.assert_array_equal(path[-1], zb.astype(np.float32))
    # draws follow N(mean, T^2 cov): over many pairs the sample mean and covariance of z_a approach the style's
    zs = np.stack([S.pair_latents(latents, cfg, p, pairs)[2] for p in range(2000)])
    sd = float(np.sqrt(np.diag(latents["cov"][a])).max())
    np.testing.assert_allclose(zs.mean(0), latents["mean"][a], atol=4 * sd / np.sqrt(2000))
    np.testing.assert_allclose(np.cov(zs, rowvar=False), latents["cov"][a], atol=0.15 * sd ** 2)
    cold = S.SamplerConfig(**{**cfg.__dict__, "temperature": 0.0})
    np.testing.assert_allclose(S.pair_latents(latents, cold, 3, pairs)[2], latents["mean"][a], rtol=1e-6)


def test_more_than_two_styles_cycle_all_pairs(vae_run, tmp_path):
    out = tmp_path / "all"
    assert S.main(["--vae", str(vae_run), "--out", str(out), "--pairs", "6", "--points", "3"]) == 0
    lines = [json.loads(l) for l in (out / "manifest.jsonl").read_text().splitlines()]
    seen = {tuple(e["styles"]) for e in lines}
    assert seen == {("night_swirls", "honeycomb"), ("night_swirls", "flat"), ("honeycomb", "flat")}
    mid = next(e for e in lines if e["styles"] == ["honeycomb", "flat"] and e["t"] == 0.5)
    assert mid["weights"] == [0.0, 0.5, 0.5]
    report = inspect_images.inspect(out, sheet=tmp_path / "sheet.png")
    m = report["manifest"]
    assert m["entries"] == 18 and m["pairs"] == 6 and m["weights_sum_to_one"]
    assert m["per_t_counts"] == {"0.000": 6, "0.500": 6, "1.000": 6}
    assert set(m["weight_histograms"]) == {"night_swirls", "honeycomb", "flat"}
    assert sum(m["weight_histograms"]["flat"]) == 18
    h, w, _ = iu.load_image(tmp_path / "sheet.png").shape
    assert h > w  # 6 pair rows x 3 t columns


def test_mismatched_rerun_refused_and_bad_inputs(vae_run, tmp_path, capsys):
    out = tmp_path / "s"
    assert S.main(sample_args(vae_run, out)) == 0
    assert S.main(sample_args(vae_run, out, "--temperature", "0.5")) == 2
    assert "temperature" in capsys.readouterr().err
    assert S.main(sample_args(tmp_path / "novae", tmp_path / "x")) == 2
    assert "novae" in capsys.readouterr().err
    assert S.main(sample_args(vae_run, tmp_path / "y", "--shard", "2/2")) == 2
    assert S.main(["--vae", str(vae_run), "--out", str(tmp_path / "z"), "--pair", "night_swirls,nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_folders_written_before_the_flag_rename_still_resume_and_verify(vae_run, tmp_path):
    out = tmp_path / "s"
    assert S.main(sample_args(vae_run, out)) == 0
    before = digest(out)
    record = json.loads((out / "sampler.json").read_text())
    record["steps"], record["styles"] = record.pop("points"), record.pop("pair")  # sampler.json as written then
    (out / "sampler.json").write_text(json.dumps(record))
    (out / "pair_00001_t0.500.png").unlink()
    assert S.main(sample_args(vae_run, out)) == 0  # the same settings under the old names: resumed, not refused
    assert digest(out) == before
    assert S.verify(out) == []
    assert S.main(sample_args(vae_run, out, "--points", "3")) == 2  # other settings are still refused


def test_posterior_draws_come_from_the_encoded_crops(vae_run, tmp_path, capsys):
    latents = vae_latents.load_latents(vae_run)
    codes, code_std = latents["codes"], latents["code_std"]
    assert codes.shape == (3, 4, 16) == code_std.shape  # 3 styles x --encode-crops 4 x latent 16
    np.testing.assert_allclose(codes.mean(1), latents["mean"], rtol=1e-5, atol=1e-6)
    assert np.all(code_std > 0)
    cfg = S.SamplerConfig(vae=str(vae_run), pairs=20, points=3, pair="night_swirls,honeycomb", draw="posterior")
    pairs = S.style_pairs([str(n) for n in latents["styles"]], cfg.pair)
    cold = S.SamplerConfig(**{**cfg.__dict__, "temperature": 0.0})
    ends = [S.pair_latents(latents, cold, p, pairs) for p in range(20)]
    # at temperature 0 each end is one crop's own code, and over 20 pairs more than one crop is drawn
    hits = {int(np.argmin(np.abs(codes[a] - za).max(1))) for a, _, za, _ in ends}
    assert all(np.abs(codes[a] - za).max(1).min() < 1e-6 for a, _, za, _ in ends) and len(hits) > 1
    warm = S.pair_latents(latents, cfg, 0, pairs)[2]
    assert np.abs(codes[0] - warm).max(1).min() > 1e-3  # with temperature 1 the crop's posterior noise is added
    out = tmp_path / "post"
    assert S.main(sample_args(vae_run, out, "--draw", "posterior")) == 0
    assert json.loads((out / "sampler.json").read_text())["draw"] == "posterior"
    assert S.main(sample_args(vae_run, out)) == 2  # a gaussian rerun into a posterior folder is refused
    assert "draw" in capsys.readouterr().err
    old = tmp_path / "oldvae"  # latents.npz written before the per-crop codes: a one-line error naming it
    shutil.copytree(vae_run, old)
    iu.atomic_write_npz(old / "latents.npz", {k: v for k, v in latents.items() if k not in ("codes", "code_std")})
    assert S.main(sample_args(old, tmp_path / "o", "--draw", "posterior")) == 2
    assert "latents.npz" in capsys.readouterr().err
