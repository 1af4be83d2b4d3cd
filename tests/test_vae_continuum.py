"""The VAE's continuum terms: path supervision, endpoint Grams, the diversity hinge, decoder noise, and
the sample measures of sample_fidelity.py."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import image_utilities as iu
import style_images
import sample_fidelity
import sample_folder
import style_sampler
import vae_keras as V
import vae_latents
import vae_model as M

ROOT = Path(__file__).resolve().parent.parent
PIXELS = 64 * 64 * 3.0


def random_grams(rng, batch, channels=3):
    out = {}
    for n in M.TEXTURE_LAYERS:
        f = rng.normal(size=(batch, 5, channels)).astype(np.float32)
        out[n] = np.einsum("bkc,bkd->bcd", f, f) / 5.0
    return out


def test_path_loss_is_zero_at_the_gram_mix_and_squared_elsewhere(rng):
    a, b = random_grams(rng, 2), random_grams(rng, 2)
    t = np.array([0.25, 0.8], np.float32)
    mix = {n: (1 - t[:, None, None]) * a[n] + t[:, None, None] * b[n] for n in M.TEXTURE_LAYERS}
    assert np.allclose(M.path_loss(mix, a, b, t, PIXELS).numpy(), 0.0, atol=1e-6)
    off = {n: mix[n] + 0.1 for n in M.TEXTURE_LAYERS}
    want = M.GRAM_WEIGHTS["gram"] * len(M.TEXTURE_LAYERS) * 9 * 0.01 * PIXELS  # 3x3 entries off by 0.1, per layer
    np.testing.assert_allclose(M.path_loss(off, a, b, t, PIXELS).numpy(), [want, want], rtol=1e-4)


def test_endpoint_loss_compares_each_present_style_mean_with_numpy(rng):
    grams = random_grams(rng, 3)
    style = random_grams(rng, 3)  # three styles, the third absent from the batch
    labels = np.array([0, 1, 0], np.int32)
    got = M.endpoint_loss(grams, labels, style, PIXELS).numpy()
    want = 0.0
    for k, members in ((0, [0, 2]), (1, [1])):
        for n in M.TEXTURE_LAYERS:
            want += ((grams[n][members].mean(0) - style[n][k]) ** 2).sum()
    assert got == pytest.approx(M.GRAM_WEIGHTS["gram"] * want * PIXELS, rel=1e-4)


def test_diversity_hinge_pushes_only_collapsed_pairs(rng):
    real = {n: rng.normal(size=(4, 4, 4, 8)).astype(np.float32) for n in M.DIVERSITY_LAYERS}
    collapsed = {n: np.concatenate([v[:2], v[:2]]) for n, v in real.items()}  # pairs (k, k+2): decodes equal
    spread = {n: 3.0 * v for n, v in real.items()}  # decodes further apart than the crops
    loss_collapsed = M.diversity_loss(collapsed, real, PIXELS).numpy()
    want = sum(((real[n][:2] - real[n][2:]) ** 2).mean(axis=(1, 2, 3)) for n in M.DIVERSITY_LAYERS)
    np.testing.assert_allclose(loss_collapsed, want * PIXELS, rtol=1e-4)
    assert np.all(M.diversity_loss(spread, real, PIXELS).numpy() == 0.0)


def noise_convolutions(decoder) -> list:
    """The decoder's 1x1 convolutions that bring the noise image in (noise0, noise1, ...)."""
    return [layer for layer in decoder.layers if layer.name.startswith("noise") and layer.name[5:].isdigit()]


def test_noise_decoder_takes_noise_at_every_resolution():
    dec = M.build_decoder(64, 8, width=4, noise_channels=2)
    noise_convs = noise_convolutions(dec)
    assert len(noise_convs) == 5
    for layer in noise_convs:  # give the noise a say, then check two noises give two pictures
        layer.set_weights([np.full_like(w, 0.5) for w in layer.get_weights()])
    z = np.zeros((2, 8), np.float32)
    noise = M.decoder_noise(np.random.default_rng(0), 2, 64, 2)
    out = dec([z, noise]).numpy()
    assert out.shape == (2, 64, 64, 3) and np.abs(out[0] - out[1]).mean() > 1e-3


def randomize_weights(model, rng):
    """Every weight random, so that biases, scales and shifts act as much as the kernels."""
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([rng.normal(0.0, 0.5, w.shape).astype(np.float32) for w in weights])


def test_texture_decoder_takes_its_layout_from_the_noise_and_its_statistics_from_z():
    """Every weight random (so biases and z act too): with no noise the picture is one colour away from the borders'
    zero padding, whatever z; shifting the noise shifts the picture; a new z under one noise changes it."""
    dec = M.build_decoder(128, 8, width=4, noise_channels=2, kind="texture")
    rng = np.random.default_rng(0)
    randomize_weights(dec, rng)
    z = rng.normal(size=(1, 8)).astype(np.float32)
    noise = M.decoder_noise(rng, 1, 128, 2)
    flat = dec([z, np.zeros_like(noise)]).numpy()[0]
    assert np.abs(flat[40:88, 40:88] - flat[64, 64]).max() < 1e-4 < np.abs(flat[0, 0] - flat[64, 64]).max()
    out = dec([z, noise]).numpy()[0]
    shifted = dec([z, np.roll(noise, 8, axis=2)]).numpy()[0]  # 8 px: a whole cell of the coarsest noise
    here = out[40:88, 40:80].ravel()
    assert np.corrcoef(here, shifted[40:88, 48:88].ravel())[0, 1] > 0.95
    assert np.corrcoef(here, shifted[40:88, 40:80].ravel())[0, 1] < 0.8
    other = dec([rng.normal(size=(1, 8)).astype(np.float32), noise]).numpy()[0]
    assert np.abs(other - out).mean() > 1e-2
    # Fully convolutional: built for 128 px, it draws 200 x 96 from noise of that size, with the same layout rules
    wide = dec([z, M.decoder_noise(rng, 1, 200, 2)[:, :, :96]]).numpy()[0]
    flat_wide = dec([z, np.zeros((1, 200, 96, 2), np.float32)]).numpy()[0]
    assert wide.shape == (200, 96, 3) and np.abs(flat_wide[60:140, 30:66] - flat_wide[100, 48]).max() < 1e-4
    assert np.abs(wide[60:140, 30:66] - wide[100, 48]).max() > 1e-2
    with pytest.raises(ValueError, match="noise"):
        M.build_decoder(64, 8, width=4, noise_channels=0, kind="texture")


@pytest.fixture(scope="module")
def continuum_run(tmp_path_factory, style_files):
    d = tmp_path_factory.mktemp("continuum")
    paths = style_files

    def args(run, steps):
        out = ["train", "--recipe", "seed-original", "--run-dir", str(run), "--size", "64", "--set", "latent_dim=8",
               "--set", "width=8", "--steps",
               str(steps), "--batch-size", "4", "--seed", "3", "--set", "encode_crops=8", "--log-every", "1",
               "--set", "recon=gram", "--set", "noise_channels=2", "--set", "path_weight=1",
               "--set", "endpoint_weight=1", "--set", "diversity_weight=1"]
        for p in paths:
            out += ["--style", p]
        return out
    return d, args


def test_continuum_training_logs_its_terms_and_resumes_exactly(continuum_run):
    d, args = continuum_run
    assert V.main(args(d / "one", 6)) == 0
    assert V.main(args(d / "two", 3)) == 0
    assert V.main(args(d / "two", 6)) == 0
    a, b = V.load_vae(d / "one")[0], V.load_vae(d / "two")[0]
    for wa, wb in zip(a.decoder.get_weights(), b.decoder.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-5)
    last = json.loads((d / "one" / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"path", "endpoint", "diversity"} <= set(last)
    assert all(np.isfinite(last[k]) for k in ("path", "endpoint", "diversity"))
    # after training the noise decides something: one code, two noises, two pictures
    z = np.zeros((2, 8), np.float32)
    out = a.decode(z, M.decoder_noise(np.random.default_rng(1), 2, 64, 2))
    assert np.abs(out[0] - out[1]).mean() > 1e-4


def test_sampler_gives_each_pair_its_own_noise_and_stays_byte_identical(continuum_run, tmp_path):
    d, args = continuum_run
    run = d / "one"
    if not (run / "latents.npz").exists():
        assert V.main(args(run, 6)) == 0
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    for out in (out_a, out_b):
        assert style_sampler.main(["--vae", str(run), "--out", str(out), "--pairs", "3", "--points", "3"]) == 0
    files = sorted(p.name for p in out_a.glob("*.png"))
    assert files and all((out_a / f).read_bytes() == (out_b / f).read_bytes() for f in files)
    firsts = [iu.load_image(out_a / style_sampler.file_name(p, 0.0)) for p in range(3)]
    assert np.abs(firsts[0] - firsts[1]).mean() > 1e-4


def load_benchmark(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_frechet_distance_matches_the_gaussian_closed_form():
    fid = sample_fidelity
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, (20000, 2))
    y = rng.normal([1.0, 0.0], [2.0, 1.0], (20000, 2))
    # W2^2 between diagonal Gaussians: |mu_x - mu_y|^2 + sum (sigma_x - sigma_y)^2 = 1 + 1
    assert fid.frechet_distance(x, y) == pytest.approx(2.0, abs=0.1)
    assert fid.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)


def test_sample_measures_are_cached_per_manifest_and_arguments(tmp_path, monkeypatch):
    """measure_cached measures a folder once per (manifest, styles, crops, pair cap): an unchanged call reads the
    stored report back; a changed manifest, other arguments or a damaged file measure again."""
    fid = sample_fidelity
    calls = []
    monkeypatch.setattr(fid, "measure", lambda folder, styles, crops, pairs: calls.append(crops) or {"crops": crops})
    folder = tmp_path / "samples"
    folder.mkdir()
    (folder / sample_folder.MANIFEST).write_text('{"file": "a.png"}\n')
    assert fid.measure_cached(folder, crops=8)["crops"] == 8 and len(calls) == 1
    assert fid.measure_cached(folder, crops=8)["crops"] == 8 and len(calls) == 1  # read back
    fid.measure_cached(folder, crops=16)
    assert calls == [8, 16]
    (folder / sample_folder.MANIFEST).write_text('{"file": "b.png"}\n')
    fid.measure_cached(folder, crops=16)
    (folder / "sample_fidelity.json").write_text("{not json")
    fid.measure_cached(folder, crops=16)
    assert calls == [8, 16, 16, 16]
    report = json.loads((folder / "sample_fidelity.json").read_text())  # a report of an older version
    report["measured_from"]["version"] = fid.REPORT_VERSION - 1
    (folder / "sample_fidelity.json").write_text(json.dumps(report))
    fid.measure_cached(folder, crops=16)
    assert calls == [8, 16, 16, 16, 16]
    assert json.loads((folder / "sample_fidelity.json").read_text())["measured_from"]["crops"] == 16


def test_gram_error_floor_is_the_noise_of_a_mean_of_n_real_crops():
    """The floor is the error of the mean of n real crops: for crops scattered around the reference with spread
    sigma in d dimensions it is about sigma * sqrt(d / n) / span, halving when n is four times larger, and zero
    for crops that all equal the reference."""
    fid = sample_fidelity
    rng = np.random.default_rng(3)
    d, sigma, span = 400, 0.5, 2.0
    crops = rng.normal(1.0, sigma, (512, d))
    reference = np.full(d, 1.0)
    for n in (8, 32):
        assert fid.gram_error_floor(crops, reference, n, span) == pytest.approx(sigma * np.sqrt(d / n) / span,
                                                                                rel=0.1)
    assert fid.gram_error_floor(crops, reference, 32, span) == pytest.approx(
        fid.gram_error_floor(crops, reference, 8, span) / 2, rel=0.1)
    assert fid.gram_error_floor(np.tile(reference, (64, 1)), reference, 8, span) == 0.0


def test_pace_says_how_far_along_and_how_flat_a_mean_gram_is():
    fid = sample_fidelity
    g_a, g_b = np.array([4.0, 0.0, 1.0]), np.array([0.0, 2.0, 1.0])
    mix = 0.75 * g_a + 0.25 * g_b
    on_line = fid.pace(g_a + 0.6 * (g_b - g_a), g_a, g_b, mix)  # ahead of t = 0.25, on the mixing line
    assert on_line["progress"] == pytest.approx(0.6)
    assert on_line["energy"] == pytest.approx(np.linalg.norm(0.4 * g_a + 0.6 * g_b) / np.linalg.norm(mix))
    flat = fid.pace(0.5 * mix, g_a, g_b, mix)  # the mix at half its strength
    assert flat["energy"] == pytest.approx(0.5)
    assert flat["progress"] == pytest.approx(np.dot(0.5 * mix - g_a, g_b - g_a) / np.dot(g_b - g_a, g_b - g_a))


def test_near_duplicates_count_the_repeats_a_mean_hides():
    fid = sample_fidelity
    real = np.arange(100.0)  # the 5th percentile of real-crop pairs: 4.95
    assert fid.near_duplicates(np.array([0.0, 1.0, 2.0, 50.0, 60.0]), real) == pytest.approx(0.6)
    assert fid.near_duplicates(np.array([10.0, 20.0]), real) == 0.0


def test_sample_fidelity_sees_a_collapsed_folder(continuum_run, tmp_path, capsys):
    """A folder whose samples at each t are one repeated picture has (near) zero diversity: the measure says so."""
    fid = sample_fidelity
    d, args = continuum_run
    run = d / "one"
    if not (run / "latents.npz").exists():
        assert V.main(args(run, 6)) == 0
    out = tmp_path / "s"
    assert style_sampler.main(["--vae", str(run), "--out", str(out), "--pairs", "3", "--points", "3"]) == 0
    report = fid.measure(out, crops=8)
    for t in (0, 1):  # the error split by layer covers the whole Gram vector
        by_layer = report["summary"][f"gram_error_by_layer_t{t}"]
        assert list(by_layer) == list(fid.GRAM_LAYERS)
        assert sum(v ** 2 for v in by_layer.values()) == pytest.approx(report["summary"][f"gram_error_t{t}"] ** 2,
                                                                       rel=1e-4)
        # a barely trained VAE draws far from the painting: its error lies above what 3 real crops score
        assert 0.0 < report["summary"][f"gram_error_floor_t{t}"] < report["summary"][f"gram_error_t{t}"]
    assert all(np.isfinite(r["progress"]) and r["energy"] > 0 for r in report["per_t"])
    for p in (1, 2):  # collapse: every pair becomes a copy of pair 0
        for t in (0.0, 0.5, 1.0):
            (out / style_sampler.file_name(p, t)).write_bytes((out / style_sampler.file_name(0, t)).read_bytes())
    collapsed = fid.measure(out, crops=8)
    assert collapsed["summary"]["diversity_ratio_t0"] < 1e-6 < report["summary"]["diversity_ratio_t0"]
    assert collapsed["summary"]["diversity_ratio_t1"] < 1e-6 < report["summary"]["diversity_ratio_t1"]
    assert collapsed["summary"]["near_duplicates_t0"] == collapsed["summary"]["near_duplicates_t1"] == 1.0
    assert fid.main(["--samples", str(out), "--crops", "8"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["pairs"] == 3


def test_norm_modes_recalibration_changes_only_the_inference_mode(continuum_run, capsys):
    """benchmarks/norm_modes.py: recalibrating changes no weight (the training-mode reconstructions are the same
    numbers with and without it) but does change what inference mode gives."""
    modes = load_benchmark("norm_modes")
    d, args = continuum_run
    run = d / "one"
    if not (run / "latents.npz").exists():
        assert V.main(args(run, 6)) == 0
    reports = []
    for extra in ([], ["--recalibrate"]):
        assert modes.main(["--vae", str(run), "--crops", "4", *extra]) == 0
        reports.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert set(reports[0]) == {"train_train", "train_infer", "infer_train", "infer_infer"}
    assert all(np.isfinite(v).all() for v in reports[0].values())
    np.testing.assert_allclose(reports[0]["train_train"], reports[1]["train_train"], rtol=1e-5)
    assert not np.allclose(reports[0]["infer_infer"], reports[1]["infer_infer"], rtol=1e-4)


def test_decoder_variation_sees_an_ignored_noise_input(continuum_run, capsys):
    """benchmarks/decoder_variation.py: with the noise convolutions zeroed the noise column reads 0 (the input is
    ignored), with them set it does not; the codes column is unaffected by zeroing the noise."""
    bench = load_benchmark("decoder_variation")
    d, args = continuum_run
    run = d / "one"
    if not (run / "latents.npz").exists():
        assert V.main(args(run, 6)) == 0
    vae, config = V.load_vae(run)
    latents = vae_latents.load_latents(run)
    reports = []
    for value in (0.0, 0.5):
        for layer in noise_convolutions(vae.decoder):
            layer.set_weights([np.full_like(w, value) for w in layer.get_weights()])
        reports.append(bench.measure(vae, config, latents, n=4))
    for name in latents["styles"]:
        ignored, used = reports[0][str(name)], reports[1][str(name)]
        assert ignored["noise"] < 1e-6 < used["noise"]
        assert ignored["codes"] > 1e-4
        assert set(ignored) == {"codes", "noise", "both", "noise_dims", "code_spread"}
    assert bench.main(["--vae", str(run), "--n", "3"]) == 0
    assert set(json.loads(capsys.readouterr().out.strip().splitlines()[-1])) == set(map(str, latents["styles"]))
    assert bench.main(["--vae", str(run), "--n", "1"]) == 2
    assert "--n 1" in capsys.readouterr().err


def test_decoder_variation_finds_the_dimensions_at_the_posterior_clamp():
    bench = load_benchmark("decoder_variation")
    largest = float(np.exp(0.5 * M.LOGVAR_RANGE[1]))
    std = np.full((16, 6), 0.3)
    std[:, 4] = largest
    std[:8, 1] = largest  # at the clamp for half the crops only: a mean of about half the largest std
    assert list(np.flatnonzero(bench.clamped_dims(std))) == [4]


def test_texture_decoder_trains_resumes_and_varies_with_the_noise(continuum_run, tmp_path, capsys):
    """decoder texture: the run records it, resumes exactly, samples through style_sampler.py, and its samples vary
    with the noise (decoder_variation's noise column; 0 for a seed decoder's zero-initialised noise convolutions);
    a folder made before the option resumes only as the seed decoder it holds; one made with a setting since
    measured and removed is refused in one line."""
    d, args = continuum_run
    texture = ["--set", "decoder=texture"]
    assert V.main(args(d / "tex_one", 4) + texture) == 0
    assert V.main(args(d / "tex_two", 2) + texture) == 0
    assert V.main(args(d / "tex_two", 4) + texture) == 0
    (a, config), b = V.load_vae(d / "tex_one"), V.load_vae(d / "tex_two")[0]
    assert config.decoder == "texture"
    for wa, wb in zip(a.decoder.get_weights(), b.decoder.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-5)
    # A run made with decoder_padding reflect (measured and removed) is refused where it is read and resumed; one
    # that recorded the padding that stays (zeros) loads as before.
    saved = json.loads((d / "tex_one" / "config.json").read_text())
    weights = a.decoder.get_weights()
    (d / "tex_one" / "config.json").write_text(json.dumps({**saved, "decoder_padding": "zeros"}))
    old = V.load_vae(d / "tex_one")[0]
    assert all(np.array_equal(u, v) for u, v in zip(old.decoder.get_weights(), weights))
    (d / "tex_one" / "config.json").write_text(json.dumps({**saved, "decoder_padding": "reflect"}))
    for command in (["sample", "--run-dir", str(d / "tex_one"), "--out", str(tmp_path / "s.png")],
                    args(d / "tex_one", 5) + texture):
        capsys.readouterr()
        assert V.main(command) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "decoder_padding='reflect'" in err[0] and "train a new run" in err[0]
    (d / "tex_one" / "config.json").write_text(json.dumps(saved))
    out = tmp_path / "samples"
    assert style_sampler.main(["--vae", str(d / "tex_one"), "--out", str(out), "--pairs", "3", "--points", "2"]) == 0
    assert len(list(out.glob("*.png"))) == 6
    report = load_benchmark("decoder_variation").measure(a, config, vae_latents.load_latents(d / "tex_one"), n=4)
    assert all(row["noise"] > 1e-3 for row in report.values())
    # A folder made before --decoder existed holds a seed decoder: resuming it as a texture decoder is refused
    # and leaves its config as it was.
    assert V.main(args(d / "old", 2)) == 0
    saved = json.loads((d / "old" / "config.json").read_text())
    del saved["decoder"]
    (d / "old" / "config.json").write_text(json.dumps(saved))
    before = (d / "old" / "config.json").read_text()
    capsys.readouterr()
    assert V.main(args(d / "old", 4) + texture) == 2
    assert "decoder='seed'" in capsys.readouterr().err and (d / "old" / "config.json").read_text() == before
    capsys.readouterr()
    assert V.main(args(tmp_path / "bad", 2) + texture + ["--set", "noise_channels=0"]) == 2
    assert "noise_channels must be >= 1" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_sampler_draws_a_texture_vae_at_the_stylizers_size(continuum_run, tmp_path, capsys, monkeypatch):
    """style_sampler --sample-size: a texture decoder trained on 64 px crops draws 128 px samples (recorded,
    verified, and measured against real crops of that size); a seed decoder, or a size the decoder cannot draw, is
    refused in one line before anything is written."""
    d, args = continuum_run
    if not (d / "tex_one" / "latents.npz").exists():
        assert V.main(args(d / "tex_one", 4) + ["--set", "decoder=texture"]) == 0
    out = tmp_path / "big"
    assert style_sampler.main(["--vae", str(d / "tex_one"), "--out", str(out), "--pairs", "2", "--points", "3",
                               "--sample-size", "128"]) == 0
    assert {iu.load_image(p).shape for p in out.glob("*.png")} == {(128, 128, 3)}
    assert sample_folder.read_sampler_json(out)["size"] == 128
    assert style_sampler.main(["--out", str(out), "--verify"]) == 0
    sizes = []  # the real reference crops are cut at the samples' 128 px, not the VAE's 64

    def recording(style, config, rng, n):
        sizes.append(config.size)
        return training_crops(style, config, rng, n)

    training_crops = style_images.training_crops
    monkeypatch.setattr(style_images, "training_crops", recording)
    report = sample_fidelity.measure(out, crops=8, max_pairs=10)
    monkeypatch.undo()
    assert sizes and set(sizes) == {128} and report["size"] == 128
    # Asking an existing folder for another size is refused
    capsys.readouterr()
    assert style_sampler.main(["--vae", str(d / "tex_one"), "--out", str(out), "--pairs", "2", "--points", "3"]) == 2
    assert "size=128" in capsys.readouterr().err
    if not (d / "one" / "latents.npz").exists():
        assert V.main(args(d / "one", 6)) == 0
    for vae, size, says in (("one", "128", "seed decoder"), ("tex_one", "100", "multiples of 8")):
        capsys.readouterr()
        assert style_sampler.main(["--vae", str(d / vae), "--out", str(tmp_path / vae), "--sample-size", size]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1 and not (tmp_path / vae).exists()


def test_endpoint_reach_lowers_the_error_by_moving_only_what_it_names(continuum_run, capsys):
    """benchmarks/endpoint_reach.py: descending on the endpoint Gram error through the frozen decoder (means) or on
    the decoder's weights (decoder) lowers the held-out error of a barely trained texture VAE, reports how far each
    moved, and leaves the run folder as it was."""
    d, args = continuum_run
    run = d / "tex_one"
    if not (run / "latents.npz").exists():
        assert V.main(args(run, 4) + ["--set", "decoder=texture"]) == 0
    files = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    bench = load_benchmark("endpoint_reach")
    capsys.readouterr()
    assert bench.main(["--vae", str(run), "--steps", "20", "--batch-size", "4", "--crops", "8", "--lr-means", "0.5",
                       "--lr-decoder", "0.01"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # A 4-step VAE's codes hardly change its pictures, so its means reach little; its decoder's weights reach more
    for what, gain in (("means", 1.0), ("decoder", 0.9)):
        r = report[what]
        assert len(r["before"]) == 2 and all(a < gain * b for a, b in zip(r["after"], r["before"])), (what, r)
    assert min(report["means"]["moved"]) > 0.05 and report["decoder"]["moved"][0] > 1e-3
    assert {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()} == files
    # In memory too: reach() gives the caller's decoder back as it came
    from perceptual import vgg_features
    vae, config = V.load_vae(run)
    weights = vae.decoder.get_weights()
    settings = bench.Settings(size=64, steps=3, batch_size=4, crops=8, lr_decoder=0.01)
    vgg = vgg_features(bench.LAYERS, name="reach_test_vgg")
    targets = bench.target_grams(style_images.load_styles(config.styles, 64), config, settings, vgg)
    assert bench.reach(vae, vae_latents.load_latents(run), targets, settings, vgg, "decoder")["moved"][0] > 1e-4
    for before, after in zip(weights, vae.decoder.get_weights()):
        np.testing.assert_array_equal(before, after)
    capsys.readouterr()
    assert bench.main(["--vae", str(run), "--what", "codes"]) == 2
    assert "means, decoder" in capsys.readouterr().err


def test_seed_spread_weighs_each_seed_by_its_single_style_nets(tmp_path, capsys):
    """benchmarks/seed_spread.py: the ratio of mean losses, where each net's loss is its ratio times its seed's
    single-style loss; nets missing from a seed are left out; a folder without results is a one-line error."""
    spread = load_benchmark("seed_spread")
    runs = {"s0": (50.0, 40.0, {"net": (1.2, 1.5), "only_here": (1.0, 1.0)}), "s1": (70.0, 60.0, {"net": (1.0, 1.0)})}
    for folder, (a, b, nets) in runs.items():
        (tmp_path / folder).mkdir()
        results = {"single_A_loss": a, "single_B_loss": b, "config": {"stylizer_seed": int(folder[1])}}
        results.update({n: {"loss_at_0_vs_single": r0, "loss_at_1_vs_single": r1,
                            "spearman_strength_vs_style_loss_to_A": 0.9 + r0 / 100} for n, (r0, r1) in nets.items()})
        (tmp_path / folder / "results.json").write_text(json.dumps(results))
    out = tmp_path / "spread.json"
    assert spread.main([str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert list(report["nets"]) == ["net"] and report["seeds"] == [0, 1]
    # at 0: (1.2 * 50 + 1.0 * 70) / (50 + 70); at 1: (1.5 * 40 + 1.0 * 60) / (40 + 60)
    assert report["nets"]["net"]["ratio_of_means"] == pytest.approx([130 / 120, 1.2])
    assert report["nets"]["net"]["spearman_min"] == pytest.approx(0.91)
    assert "1.08x / 1.20x" in capsys.readouterr().out
    assert spread.main([str(tmp_path / "s0"), str(tmp_path / "missing")]) == 2
    assert "missing/results.json: missing" in capsys.readouterr().err
    assert spread.main([str(tmp_path / "s0"), str(tmp_path / "s0")]) == 2  # one seed twice
    assert "each seed once" in capsys.readouterr().err
    other = json.loads((tmp_path / "s1" / "results.json").read_text())
    other["config"]["steps"] = 1000
    (tmp_path / "s1" / "results.json").write_text(json.dumps(other))
    assert spread.main([str(tmp_path / "s0"), str(tmp_path / "s1")]) == 2  # another budget is another experiment
    assert "differs in steps" in capsys.readouterr().err


def test_a_linked_stage_keeps_the_time_it_took_where_it_ran(tmp_path):
    """benchmarks/multistyle_experiment.py: a VAE folder linked from another experiment (a seed study) only resumes
    here; its time is the one the other experiment recorded."""
    exp = load_benchmark("multistyle_experiment")
    (tmp_path / "first" / "vae_x").mkdir(parents=True)
    (tmp_path / "first" / "timings.json").write_text(json.dumps({"vae_x": 612.5}))
    (tmp_path / "second").mkdir()
    (tmp_path / "second" / "vae_x").symlink_to(tmp_path / "first" / "vae_x")
    assert exp.linked_timing(tmp_path / "second" / "vae_x", "vae_x") == 612.5
    assert exp.linked_timing(tmp_path / "second" / "vae_x", "vae_y") is None
    assert exp.linked_timing(tmp_path / "first" / "vae_x", "vae_x") is None  # not a link: it ran here
