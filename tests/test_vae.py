import json
import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

import image_utilities as iu
import builtin_images
import style_images
import vae_keras as V
import vae_latents
import vae_model as M
import vae_keras_gui as G
from run_dir import NonFiniteLoss, Run


def train_args(styles, run_dir, steps, *extra):
    args = ["train", "--recipe", "seed-original", "--run-dir", str(run_dir), "--size", "64", "--set", "latent_dim=16",
            "--set", "width=8",
            "--steps", str(steps), "--batch-size", "2", "--seed", "1", "--set", "encode_crops=8", "--log-every", "1"]
    for s in styles:
        args += ["--style", s]
    return args + list(extra)


@pytest.mark.parametrize("size", [64, 128, 224])
def test_shapes_and_no_final_dense(size):
    enc, dec = M.build_encoder(size, 8, width=4), M.build_decoder(size, 8, width=4)
    out = enc(np.zeros((2, size, size, 3), np.float32))
    assert out["mean"].shape == (2, 8) and out["logvar"].shape == (2, 8)
    assert dec(np.zeros((2, 8), np.float32)).shape == (2, size, size, 3)
    dense = [l for l in dec.layers if isinstance(l, keras.layers.Dense)]
    assert [l.name for l in dense] == ["seed_map"]  # only the small seed map is dense
    assert isinstance(dec.layers[-1], keras.layers.Conv2D)  # no final fully connected layer


def test_size_must_be_multiple_of_32():
    with pytest.raises(ValueError, match="multiple of 32"):
        M.build_encoder(100, 8)


def test_bce_is_computed_from_logits():
    rng = np.random.default_rng(0)
    target = rng.random((2, 4, 4, 3)).astype(np.float32)
    logits = rng.normal(0, 3, (2, 4, 4, 3)).astype(np.float32)
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    want = -(target * np.log(p) + (1 - target) * np.log(1 - p)).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(M.reconstruction_loss("bce", logits, target).numpy(), want, rtol=1e-5)
    # The loss takes logits: its gradient is sigmoid(logits) - target, zero where sigmoid(logits) == target.
    # Feeding sigmoid outputs instead (the original project's bug) would move that minimum.
    lg = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(M.reconstruction_loss("bce", lg, target))
    np.testing.assert_allclose(tape.gradient(loss, lg).numpy(), p - target, atol=1e-5)
    best = np.log(target / (1 - target))
    assert M.reconstruction_loss("bce", best, target).numpy().sum() < \
        M.reconstruction_loss("bce", 1 / (1 + np.exp(-best)), target).numpy().sum()


def test_mse_and_perceptual_recon_are_zero_for_perfect_reconstruction():
    target = np.full((1, 32, 32, 3), 0.3, np.float32)
    logits = np.log(target / (1 - target))
    assert M.reconstruction_loss("mse", logits, target).numpy()[0] == pytest.approx(0, abs=1e-6)
    from perceptual import vgg_features
    vgg = vgg_features(list(M.PERCEPTUAL_LAYERS))
    assert M.reconstruction_loss("perceptual", logits, target, vgg).numpy()[0] == pytest.approx(0, abs=1e-3)
    noisy = np.clip(target + np.random.default_rng(0).normal(0, 0.1, target.shape), 0.01, 0.99).astype(np.float32)
    assert M.reconstruction_loss("perceptual", logits, noisy, vgg).numpy()[0] > 1.0


def test_gram_recon_rewards_texture_statistics_not_phase():
    from perceptual import vgg_features
    vgg = vgg_features(list(M.PERCEPTUAL_LAYERS))
    x = np.clip(builtin_images.default_styles(64)["night_swirls"][None], 0.01, 0.99).astype(np.float32)
    logit = lambda im: np.log(im / (1 - im))  # noqa: E731
    shifted = np.roll(x, 13, axis=2)  # the same texture, another phase
    other = np.clip(builtin_images.default_styles(64)["honeycomb"][None], 0.01, 0.99).astype(np.float32)
    same = M.reconstruction_loss("gram", logit(x), x, vgg).numpy()[0]
    moved = M.reconstruction_loss("gram", logit(shifted), x, vgg).numpy()[0]
    different = M.reconstruction_loss("gram", logit(other), x, vgg).numpy()[0]
    assert same == pytest.approx(0, abs=1e-2)
    assert moved < 0.2 * different
    # --feature-weight: the feature term asks for the crop's own layout, so the shifted texture costs more with it
    layout = M.reconstruction_loss("gram", logit(shifted), x, vgg, feature_weight=10.0).numpy()[0]
    blind = M.reconstruction_loss("gram", logit(shifted), x, vgg, feature_weight=0.0).numpy()[0]
    default = M.GRAM_WEIGHTS["feature"]
    assert layout > 2 * moved and blind < moved
    assert moved == pytest.approx(blind + default / 10.0 * (layout - blind), rel=1e-4)  # linear in the weight


def test_closed_form_kl():
    mean = np.array([[0.0, 0.0], [1.0, -2.0]], np.float32)
    logvar = np.array([[0.0, 0.0], [np.log(0.5), np.log(2.0)]], np.float32)
    kl = M.kl_divergence(mean, logvar).numpy()
    assert kl[0] == pytest.approx(0.0, abs=1e-7)
    var = np.exp(logvar[1])
    assert kl[1] == pytest.approx(0.5 * np.sum(var + mean[1] ** 2 - 1 - logvar[1]), rel=1e-6)
    # Monte Carlo check of the same KL: E_q[log q - log p].
    rng = np.random.default_rng(0)
    z = mean[1] + np.sqrt(var) * rng.standard_normal((200000, 2))
    log_q = -0.5 * (((z - mean[1]) ** 2) / var + np.log(2 * np.pi * var)).sum(1)
    log_p = -0.5 * (z ** 2 + np.log(2 * np.pi)).sum(1)
    assert kl[1] == pytest.approx((log_q - log_p).mean(), rel=0.02)


def test_style_size_sets_the_scale_and_small_styles_are_enlarged(tmp_path):
    iu.save_image(tmp_path / "wide.png", np.random.default_rng(0).random((100, 300, 3)).astype(np.float32))
    iu.save_image(tmp_path / "tiny.png", np.random.default_rng(1).random((20, 30, 3)).astype(np.float32))
    wide, = style_images.load_styles([str(tmp_path / "wide.png")], size=64, style_size=80)
    assert wide.shape == (80, 240, 3)
    with pytest.warns(UserWarning, match="tiny.png.*enlarging"):
        tiny, = style_images.load_styles([str(tmp_path / "tiny.png")], size=64)
    assert min(tiny.shape[:2]) == 64
    builtin, = style_images.load_styles(["builtin:honeycomb"], size=64, style_size=128)
    assert builtin.shape == (128, 128, 3)


def test_beta_warmup():
    c = V.VAEConfig(beta=2.0, beta_warmup=10)
    assert [V.beta_at(c, s) for s in (0, 5, 10, 50)] == [0.0, 1.0, 2.0, 2.0]


def test_cosine_lr_schedule_decays_to_the_floor_and_reaches_the_optimizer(style_files, tmp_path):
    c = V.VAEConfig(lr=1e-3, steps=5, lr_schedule="cosine")
    rates = [V.lr_at(c, s) for s in range(5)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(V.LR_FLOOR * 1e-3)
    assert rates[2] == pytest.approx(1e-3 * (1 + V.LR_FLOOR) / 2)  # half way down at half the steps
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert V.lr_at(V.VAEConfig(lr=1e-3, steps=5, lr_schedule="constant"), 4) == 1e-3
    run = tmp_path / "cos"
    assert V.main(train_args(style_files, run, 5, "--lr", "1e-3", "--set", "lr_schedule=cosine")) == 0
    logged = [json.loads(l)["lr"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(logged, rates, rtol=1e-6)
    assert json.loads((run / "config.json").read_text())["lr_schedule"] == "cosine"
    import tensorflow as tf  # the optimizer itself ran the last step at the floor (its rate is in the checkpoint)
    saved = tf.train.load_checkpoint(str(run / "checkpoints"))
    assert saved.get_tensor("optimizer/_learning_rate/.ATTRIBUTES/VARIABLE_VALUE") == pytest.approx(rates[-1], rel=1e-5)


def test_interpolate_endpoints_and_slerp_norm():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(64), rng.standard_normal(64)
    for kind in ("linear", "slerp"):
        path = M.interpolate(a, b, np.linspace(0, 1, 5), kind)
        np.testing.assert_array_equal(path[0], a.astype(np.float32))
        np.testing.assert_array_equal(path[-1], b.astype(np.float32))
    mid_lin = M.interpolate(a, b, [0.5], "linear")[0]
    mid_slerp = M.interpolate(a, b, [0.5], "slerp")[0]
    # slerp keeps the norm typical of the endpoints; a straight line shrinks it
    assert np.linalg.norm(mid_slerp) > np.linalg.norm(mid_lin)


def test_train_resume_equivalence_and_run_folder(style_files, tmp_path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    assert V.main(train_args(style_files, one, 8)) == 0
    assert V.main(train_args(style_files, two, 4)) == 0
    assert V.main(train_args(style_files, two, 8)) == 0
    a, _ = V.load_vae(one)
    b, _ = V.load_vae(two)
    for wa, wb in zip(a.decoder.get_weights() + a.encoder.get_weights(),
                      b.decoder.get_weights() + b.encoder.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-5)
    steps = [json.loads(l)["step"] for l in (two / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))
    rec = json.loads((two / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"step", "recon", "kl", "loss"} <= set(rec)
    assert json.loads((two / "config.json").read_text())["steps"] == 8  # the resumed run records its new budget
    snapshots = [iu.load_image(two / "snapshots" / f"step_{s:06d}.png") for s in (4, 8)]
    # rows: crops, reconstructions, decodes of fixed codes; 2 crops per style, 64 px tiles with 2 px gaps
    assert snapshots[0].shape == (3 * 64 + 4 * 2, 4 * 64 + 5 * 2, 3)
    assert np.abs(snapshots[0][70:136] - snapshots[1][70:136]).mean() > 1e-3  # training changed the reconstructions
    np.testing.assert_array_equal(snapshots[0][:66], snapshots[1][:66])  # the same fixed crops in the first row
    quad = iu.load_image(two / "quad_0.png")
    assert quad.shape[0] > 128 and quad.shape[1] > 128 and quad.std() > 0.05  # two crops over two reconstructions
    with np.load(two / "latents.npz") as z:
        assert list(z["styles"]) == ["night_swirls", "honeycomb"]
        assert z["mean"].shape == (2, 16) and z["std"].shape == (2, 16)
        assert np.all(z["std"] > 0)
    # GIF of the snapshots works
    n, _ = iu.make_gif(two / "snapshots", tmp_path / "train.gif")
    assert n == 2
    # a conflicting config is refused with a clear message
    assert V.main(train_args(style_files, two, 10, "--set", "latent_dim=32")) == 2
    assert "latent_dim" in capsys.readouterr().err


def test_encode_reconstruct_sample_and_gui(style_files, tmp_path, capsys):
    run = tmp_path / "r"
    assert V.main(train_args(style_files, run, 2)) == 0
    (run / "latents.npz").unlink()
    assert V.main(["encode", "--run-dir", str(run), "--crops", "4"]) == 0
    assert vae_latents.load_latents(run)["mean"].shape == (2, 16)
    assert V.main(["reconstruct", "--run-dir", str(run), style_files[0], "--out", str(tmp_path / "rec")]) == 0
    pair = iu.load_image(tmp_path / "rec" / "night_swirls_recon.png")  # [the centre crop | its reconstruction]
    vae, config = V.load_vae(run)
    crop = iu.center_crop(style_images.at_training_scale(iu.load_image(style_files[0]), 64), 64)
    assert pair.shape == (64 + 2 * 2, 2 * 64 + 3 * 2, 3)
    np.testing.assert_allclose(pair[2:66, 2:66], crop, atol=1 / 255 + 1e-6)
    np.testing.assert_allclose(pair[2:66, 68:132], vae.reconstruct(crop[None])[0], atol=1 / 255 + 1e-6)
    assert V.main(["sample", "--run-dir", str(run), "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    grid = iu.load_image(tmp_path / "s.png")  # 2 x 2 decodes of random codes: four different pictures
    tiles = [grid[2 + r * 66:66 + r * 66, 2 + c * 66:66 + c * 66] for r in (0, 1) for c in (0, 1)]
    assert grid.shape == (2 * 64 + 3 * 2, 2 * 64 + 3 * 2, 3)
    assert min(np.abs(a - b).mean() for i, a in enumerate(tiles) for b in tiles[i + 1:]) > 1e-3
    strip = tmp_path / "strip.png"
    assert G.main(["--vae", str(run), *style_files, "--points", "5", "--save", str(strip)]) == 0
    state = G.Interpolator(vae, config, *(iu.load_image(p) for p in style_files), 5, "linear")
    ts, frames = state.strip()  # the strip's decodes walk from A's code to B's
    assert list(ts) == [0.0, 0.25, 0.5, 0.75, 1.0] and len(frames) == 5
    steps = [np.abs(a - b).mean() for a, b in zip(frames, frames[1:])]
    assert np.abs(frames[0] - frames[-1]).mean() > max(steps) > 0
    h, w, _ = iu.load_image(strip).shape
    assert w > 4 * h  # 7 panels in one row: A, five decodes, B
    assert G.main(["--vae", str(tmp_path / "nowhere"), *style_files, "--save", str(strip)]) == 2


def test_gui_window_click_moves_crop_and_slider_redraws(style_files, tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import types

    run = tmp_path / "r"
    assert V.main(train_args(style_files, run, 2)) == 0
    vae, config = V.load_vae(run)
    big = iu.resize(builtin_images.default_styles(96)["honeycomb"], 160, 200)
    state = G.Interpolator(vae, config, big, iu.load_image(style_files[0]), points=4, interp="slerp")
    window = G.build_window(state)
    z_before, center_before = state.z[0].copy(), state.centers[0]
    window.on_click(types.SimpleNamespace(inaxes=window.inputs[0], xdata=5.0, ydata=150.0))
    assert state.centers[0] == (160 - 32, 32)  # clamped so the 64 px crop stays inside the image
    assert state.centers[0] != center_before and not np.allclose(state.z[0], z_before)
    window.slider.set_val(0.0)
    shown = window.interpolation.images[-1].get_array()
    np.testing.assert_allclose(shown, state.decode_at([0.0])[0], atol=1e-6)


def test_bad_style_image_exits_2_with_name(tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_text("nope")
    assert V.main(train_args([str(bad)], tmp_path / "r", 2)) == 2
    assert "broken.jpg" in capsys.readouterr().err
    assert V.main(["encode", "--run-dir", str(tmp_path / "missing")]) == 2


def on_third_step(monkeypatch, action):
    """Wrap the VAE's compiled train step so that `action(metrics)` can change what its third call returns (or do
    something around it)."""
    real = V.make_train_step

    def patched(*a, **k):
        step_fn, calls = real(*a, **k), {"n": 0}

        def wrapped(*args):
            calls["n"] += 1
            out = step_fn(*args)
            return action(out) if calls["n"] == 3 else out
        return wrapped

    monkeypatch.setattr(V, "make_train_step", patched)


def test_nan_stops_and_keeps_last_good_checkpoint(style_files, tmp_path, monkeypatch, capsys):
    on_third_step(monkeypatch, lambda out: {**out, "loss": tf.constant(np.nan)})
    run = tmp_path / "nan"
    assert V.main(train_args(style_files, run, 6, "--checkpoint-every", "1")) == 1
    err = capsys.readouterr().err
    assert "NaN" in err.replace("nan", "NaN") and "ckpt-2" in err
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-2")
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]


def test_sigterm_saves_and_exits(style_files, tmp_path, monkeypatch):
    def terminate(out):
        os.kill(os.getpid(), signal.SIGTERM)
        return out

    on_third_step(monkeypatch, terminate)
    run = tmp_path / "term"
    before = signal.getsignal(signal.SIGTERM)
    assert V.main(train_args(style_files, run, 50)) == 130  # saved, not finished: a pipeline must not go on
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-3")
    assert signal.getsignal(signal.SIGTERM) is before  # the job's handler is removed on the way out


def test_run_check_finite_unit(tmp_path):
    run = Run(tmp_path, {"a": 1})
    run.checkpoint()
    run.check_finite(1, {"loss": 1.0})
    with pytest.raises(NonFiniteLoss, match="loss became inf at step 7"):
        run.check_finite(7, {"loss": float("inf")})


def test_recalibrated_norms_make_sampling_agree_with_training(style_files):
    """Stale moving averages (what a fast-moving run holds) make inference-mode codes and decodes differ from the
    training-mode ones the losses saw; after recalibrate_norms the two agree."""
    config = V.VAEConfig(styles=tuple(style_files), size=64, latent_dim=8, width=8, batch_size=8, seed=2,
                         noise_channels=2, path_weight=1.0, recon="gram", decoder="seed", style_size=0)
    keras.utils.set_random_seed(0)  # the margins below vary with the initial weights (0.2-0.3 and 0.4-0.7)
    vae = M.VAE(config)
    styles = style_images.load_styles(config.styles, config.size)
    rng = np.random.default_rng(0)
    norms = V.batch_norms(vae.encoder) + V.batch_norms(vae.decoder)
    assert len(norms) == 20  # every batch norm of both networks (10 each)
    for layer in norms:  # statistics far from the current weights'
        layer.moving_mean.assign(rng.normal(0.0, 3.0, layer.moving_mean.shape))
        layer.moving_variance.assign(np.full(layer.moving_variance.shape, 20.0))
    # a large batch, whose own statistics are close to the population's
    images, _ = V.crop_batch(styles, config, np.random.default_rng(7), 64)
    z = tf.constant(rng.standard_normal((64, 8)), tf.float32)
    noise = tf.constant(M.decoder_noise(rng, 64, 64, 2))

    def gaps():
        # inference mode first: a training-mode call moves the stored statistics toward its batch
        codes = [vae.encoder(images, training=mode)["mean"].numpy() for mode in (False, True)]
        decodes = [tf.sigmoid(vae.decoder([z, noise], training=mode)).numpy() for mode in (False, True)]
        relative = lambda a, b: np.abs(a - b).mean() / np.abs(a).mean()
        return relative(*codes), np.abs(decodes[0] - decodes[1]).mean()

    code_before, image_before = gaps()
    V.recalibrate_norms(vae, styles, config, batches=16)
    code_after, image_after = gaps()
    # (an untrained net amplifies what is left of batch-to-batch differences; trained runs agree to a few percent)
    assert code_after < 0.5 * code_before, (code_before, code_after)
    assert image_after < 0.6 * image_before, (image_before, image_after)
    assert all(layer.momentum == 0.99 for layer in norms)  # the training momentum is put back
