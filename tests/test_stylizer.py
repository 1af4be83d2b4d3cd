import dataclasses
import json
import shutil

import cv2
import numpy as np
import pytest
import tensorflow as tf

import builtin_images
import image_utilities as iu
import style_sampler as SS
import stylizer as S
import stylizer_run as R
import stylizer_apply as A
import stylizer_data as D
import stylizer_net as N
import vae_keras as V
from conftest import gradient_image, snapshot_image_steps


def original_config(**settings):
    """A StylizerConfig with the original design's data settings (each sample's own target, no anchoring, no share
    at the ends, style planes), which these tests of the mechanics were written for; `settings` override them."""
    return R.StylizerConfig(**{"style_targets": "each", "anchor_ends": False, "end_share": 0.0,
                               "conditioning": "channels", "precision": "float32", **settings})


@pytest.fixture(scope="module")
def content_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("content")
    for name, im in builtin_images.default_content(72).items():
        iu.save_image(d / "sub" / f"{name}.png", im)
    iu.save_image(d / "photo.jpg", gradient_image(50, 70))
    good = (d / "photo.jpg").read_bytes()
    (d / "zz_corrupt.jpg").write_bytes(good[: len(good) // 3])
    return d


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    """A 4-step 64 px VAE and a 3x5 sample folder from it."""
    d = tmp_path_factory.mktemp("pipeline")
    args = [arg for p in builtin_images.write_defaults(d, 96)["styles"] for arg in ("--style", str(p))]
    assert V.main(["train", "--recipe", "seed-original", "--run-dir", str(d / "vae"), "--size", "64", "--set",
                   "latent_dim=16", "--set", "width=8",
                   "--steps", "4", "--batch-size", "2", "--set", "encode_crops=4", *args]) == 0
    assert SS.main(["--vae", str(d / "vae"), "--out", str(d / "samples"), "--pairs", "3", "--points", "5"]) == 0
    return d / "samples"


@pytest.mark.parametrize("mode,n", [("channels", 2), ("channels", 3), ("balance", 2), ("cin", 3), ("none", 1)])
def test_every_conditioning_runs_at_odd_sizes(mode, n):
    net = N.build_stylizer(n, mode)
    for h, w in [(37, 53), (64, 61)]:
        out = net({"image": np.random.rand(2, h, w, 3).astype(np.float32),
                   "weights": np.full((2, n), 1.0 / n, np.float32)})
        assert out.shape == (2, h, w, 3)
    if mode != "none":  # the conditioning input reaches the output
        x = np.random.rand(1, 40, 40, 3).astype(np.float32)
        a = net({"image": x, "weights": np.eye(n, dtype=np.float32)[:1]})
        b = net({"image": x, "weights": np.eye(n, dtype=np.float32)[1:2]})
        if mode != "cin":  # CIN starts with identical per-style scales, so only training separates them
            assert float(tf.reduce_max(tf.abs(a - b))) > 1e-4


def test_instance_norm_matches_moments():
    layer = N.InstanceNorm()
    x = np.random.default_rng(0).normal(2, 3, (3, 9, 7, 5)).astype(np.float32)
    y = layer(x).numpy()
    m, v = x.mean(axis=(1, 2), keepdims=True), x.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(y, (x - m) / np.sqrt(v + 1e-5), atol=1e-4)
    cin = N.InstanceNorm(num_styles=2)
    cin([x, np.array([[1, 0]] * 3, np.float32)])
    cin.gamma.assign(np.stack([np.ones(5), 3 * np.ones(5)]).astype(np.float32))
    mixed = cin([x, np.array([[0.5, 0.5]] * 3, np.float32)]).numpy()
    np.testing.assert_allclose(mixed, 2 * (x - m) / np.sqrt(v + 1e-5), atol=1e-4)


@pytest.mark.parametrize("mode,n", [("channels", 2), ("cin", 3)])
def test_layers_are_registered_for_keras_serialization(tmp_path, mode, n):
    import keras
    net = N.build_stylizer(n, mode)
    net.save(tmp_path / "net.keras")
    back = keras.saving.load_model(tmp_path / "net.keras")
    x = {"image": np.random.default_rng(0).random((1, 21, 30, 3), np.float32),
         "weights": np.full((1, n), 1.0 / n, np.float32)}
    np.testing.assert_array_equal(back(x), net(x))
    assert {type(layer) for layer in back.layers} >= {N.InstanceNorm, N.ReflectionPad, N.CropLike}


def test_balance_needs_two_styles():
    with pytest.raises(ValueError, match="exactly 2"):
        N.build_stylizer(3, "balance")
    with pytest.raises(ValueError, match="unknown conditioning"):
        N.build_stylizer(2, "planes")


@pytest.mark.parametrize("mode", ["channels", "balance", "cin"])
def test_flat_colour_styles_move_output_colour(tmp_path, content_dir, mode):
    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    iu.save_image(red, np.full((48, 48, 3), [0.9, 0.15, 0.1], np.float32))
    iu.save_image(blue, np.full((48, 48, 3), [0.1, 0.2, 0.9], np.float32))
    run = tmp_path / "run"
    assert S.main(["train", "--recipe", "seed-original", "--style", str(red), "--style", str(blue), "--content",
                   str(content_dir),
                   "--run-dir", str(run), "--size", "32", "--steps", "150", "--batch-size", "2", "--lr", "2e-3",
                   "--set", f"conditioning={mode}", "--log-every", "50", "--set", "snapshot_every=1000"]) == 0
    net, _, names = R.load_stylizer(run)
    assert names == ["red", "blue"]
    photo = iu.center_crop(gradient_image(40, 40, seed=5), 32)
    at_a, mid, at_b = (A.stylize_array(net, photo, w).reshape(-1, 3).mean(0) for w in ([1, 0], [.5, .5], [0, 1]))
    assert at_a[0] - at_a[2] > at_b[0] - at_b[2] + 0.1  # redder at strength 0, bluer at strength 1
    assert at_a[2] < mid[2] < at_b[2]  # and in between at 0.5
    if mode == "channels":  # evaluate measures the same: style loss to A rises with strength, to B falls
        assert S.main(["evaluate", "--run-dir", str(run), "--content", str(content_dir), "--strengths", "5",
                       "--out", str(tmp_path / "ev.json")]) == 0
        result = json.loads((tmp_path / "ev.json").read_text())
        to_a = [r["style_loss_to_A"] for r in result["per_strength"]]
        to_b = [r["style_loss_to_B"] for r in result["per_strength"]]
        assert to_a == sorted(to_a) and to_b == sorted(to_b, reverse=True)
        # A net that ignored its strength would give ratios near 1; this 150-step net gives about 2 (A) and 6 (B),
        # and which side of 2 the first lands on depends on float rounding (1.96 / 2.07 with the last
        # convolution blocked / plain): the bar is 1.5.
        assert to_a[-1] > 1.5 * to_a[0] and to_b[0] > 1.5 * to_b[-1]
        assert result["spearman_strength_vs_style_loss_to_A"] == pytest.approx(1.0)


def test_gram_cache_is_reused_and_invalidated(samples, tmp_path, monkeypatch):
    from perceptual import vgg_features
    folder = tmp_path / "samples"
    shutil.copytree(samples, folder)  # this test edits the manifest: never the shared fixture
    layers = list(D.STYLE_LAYERS)
    vgg = vgg_features(layers)
    (folder / "grams.npz").unlink(missing_ok=True)
    w, grams, names = D.load_sample_styles(folder, vgg, layers, quiet=True)
    assert w.shape == (15, 2) and grams["relu4_3"].shape == (15, 512, 512)
    assert names == ["night_swirls", "honeycomb"]

    def boom(*a, **k):
        raise AssertionError("recomputed despite a valid cache")

    monkeypatch.setattr(D, "compute_grams", boom)
    w2, grams2, _ = D.load_sample_styles(folder, vgg, layers, quiet=True)
    np.testing.assert_array_equal(grams2["relu2_2"], grams["relu2_2"])
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(manifest.read_text().splitlines(keepends=True)[:-1]))  # the manifest changes
    with pytest.raises(AssertionError, match="recomputed"):
        D.load_sample_styles(folder, vgg, layers, quiet=True)
    monkeypatch.undo()
    w3, _, _ = D.load_sample_styles(folder, vgg, layers, quiet=True)
    assert len(w3) == 14


def test_mean_style_targets_average_the_samples_of_each_strength(samples):
    """--style-targets mean: every sample's target is the mean Gram of the samples at its t (checked against a
    plain loop), and a batch draws those means; --style-crop-size with mean targets gives one target per image."""
    from perceptual import vgg_features
    layers = ["relu1_2", "relu2_2"]
    vgg = vgg_features(layers)
    each = D.StyleTargets(original_config(samples=str(samples)), vgg, layers)
    mean = D.StyleTargets(original_config(samples=str(samples), style_targets="mean"), vgg, layers)
    for i, w in enumerate(each.weights):
        same = np.flatnonzero(np.all(each.weights == w, axis=1))
        assert len(same) == 3  # 3 pairs at each of 5 points
        np.testing.assert_allclose(mean.grams["relu2_2"][i], each.grams["relu2_2"][same].mean(0), rtol=1e-5,
                                   atol=1e-7)
    assert np.abs(each.grams["relu2_2"] - mean.grams["relu2_2"]).max() > 1e-4  # the samples differ
    w, grams = mean.batch(np.random.default_rng(0), 6)
    for k in range(6):
        i = np.flatnonzero(np.all(mean.weights == w[k], axis=1))[0]
        np.testing.assert_array_equal(grams["relu1_2"][k], mean.grams["relu1_2"][i])
    style = str(samples.parent / "styles" / "night_swirls.png")
    config = original_config(style_images=(style,), size=96, style_crop_size=32)
    crops = D.StyleTargets(config, vgg, layers)
    crops_mean = D.StyleTargets(dataclasses.replace(config, style_targets="mean"), vgg, layers)
    assert crops_mean.image_grams[0]["relu2_2"].shape == (1, 128, 128)
    np.testing.assert_allclose(crops_mean.image_grams[0]["relu2_2"][0], crops.image_grams[0]["relu2_2"].mean(0),
                               rtol=1e-5, atol=1e-7)
    assert np.abs(crops.image_grams[0]["relu2_2"][0] - crops_mean.image_grams[0]["relu2_2"][0]).max() > 1e-4


def test_end_share_draws_that_share_at_a_pure_style_and_leaves_the_rest_as_before(samples):
    """--end-share F: about F of the examples at strength 0 or 1 (two style images) or on a sample of one style (a
    sample folder), half at each end; the other examples are drawn as without it, and F=0 draws exactly as before."""
    from perceptual import vgg_features
    layers = ["relu1_2"]
    vgg = vgg_features(layers)
    styles = tuple(str(samples.parent / "styles" / f"{n}.png") for n in ("night_swirls", "honeycomb"))
    for source in ({"samples": str(samples)}, {"style_images": styles, "size": 64}):
        plain = D.StyleTargets(original_config(**source), vgg, layers)
        ends = D.StyleTargets(original_config(**source, end_share=0.5), vgg, layers)
        w0, g0 = plain.batch(np.random.default_rng(3), 2000)
        w1, g1 = ends.batch(np.random.default_rng(3), 2000)
        pure0, pure1 = w0.max(1) > 1 - 1e-6, w1.max(1) > 1 - 1e-6
        # samples: 2 of the 5 points are pure (40%, + half of the other 60% = 70%); strengths: none of U(0, 1)
        share = 0.4 if "samples" in source else 0.0
        assert abs(pure0.mean() - share) < 0.04 and abs(pure1.mean() - (share + 0.5 * (1 - share))) < 0.04
        assert abs(w1[pure1, 0].mean() - 0.5) < 0.06  # both ends
        np.testing.assert_array_equal(w1[~pure1], w0[~pure1])  # the rest: the same draws
        for k in np.flatnonzero(pure1)[:20]:  # each pure example's target is a Gram of its style
            style = int(np.argmax(w1[k]))
            if "samples" in source:
                own = plain.grams["relu1_2"][np.flatnonzero(plain.weights[:, style] > 1 - 1e-6)]
                assert np.abs(own - g1["relu1_2"][k]).max(axis=(1, 2)).min() == 0.0
            else:
                np.testing.assert_allclose(g1["relu1_2"][k], plain.image_grams[style]["relu1_2"][0], rtol=1e-6)
        # F=0 draws as the code did before --end-share: one index per example, or one uniform strength
        old = np.random.default_rng(3)
        expected = (plain.weights[old.integers(0, len(plain.weights), 2000)] if "samples" in source else
                    N.strength_weights(2, old.uniform(0.0, 1.0, 2000).astype(np.float32)))
        np.testing.assert_array_equal(w0, expected)


def test_anchored_targets_put_the_pure_samples_on_the_paintings_and_keep_the_rest_of_the_walk(samples):
    """--anchor-ends: the mean target of each style's pure samples becomes the painting's whole-image Gram at --size
    (the VAE's style image), every sample moves by its weights' mix of the two ends' shifts (so samples at one t keep
    their differences), with each and with mean targets."""
    from perceptual import vgg_features
    layers = ["relu1_2", "relu2_2"]
    vgg = vgg_features(layers)
    styles = [str(samples.parent / "styles" / f"{n}.png") for n in ("night_swirls", "honeycomb")]
    paintings = D.style_image_grams(styles, 64, vgg, layers)
    for targets in ("each", "mean"):
        config = original_config(samples=str(samples), size=64, style_targets=targets)
        plain = D.StyleTargets(config, vgg, layers)
        moved = D.StyleTargets(dataclasses.replace(config, anchor_ends=True), vgg, layers)
        w = plain.weights
        for k in (0, 1):
            pure = w[:, k] > 1 - 1e-6
            np.testing.assert_allclose(moved.grams["relu2_2"][pure].mean(0), paintings[k]["relu2_2"][0], rtol=1e-4,
                                       atol=1e-6)
            assert np.abs(plain.grams["relu2_2"][pure].mean(0) - paintings[k]["relu2_2"][0]).max() > 1e-3
        shift = moved.grams["relu1_2"] - plain.grams["relu1_2"]
        ends = [shift[w[:, k] > 1 - 1e-6][0] for k in (0, 1)]
        np.testing.assert_allclose(shift, np.einsum("ns,scd->ncd", w, np.stack(ends)), rtol=1e-4, atol=1e-6)


def test_anchoring_leaves_a_style_the_folder_never_draws_and_refuses_a_style_count_mismatch():
    """A folder drawn with style_sampler --pair A,C from a three-style VAE weighs B at 0 everywhere: B's targets are
    not moved (and not asked for pure samples); paintings for another number of styles are refused."""
    weights = np.array([[1, 0, 0], [0.5, 0, 0.5], [0, 0, 1]], np.float32)
    grams = {"g": np.arange(12, dtype=np.float32).reshape(3, 2, 2)}
    paintings = [{"g": np.full((1, 2, 2), 10.0 * (k + 1), np.float32)} for k in range(3)]
    out = D.anchored(weights, grams, paintings)["g"]
    np.testing.assert_allclose(out[0], paintings[0]["g"][0])
    np.testing.assert_allclose(out[2], paintings[2]["g"][0])
    np.testing.assert_allclose(out[1], grams["g"][1] + 0.5 * (paintings[0]["g"][0] - grams["g"][0])
                               + 0.5 * (paintings[2]["g"][0] - grams["g"][2]))
    with pytest.raises(D.RunError, match="3 styles"):
        D.anchored(weights, grams, paintings[:2])


def train_args(samples, content, run, steps):
    return ["train", "--recipe", "seed-original", "--samples", str(samples), "--content", str(content), "--run-dir",
            str(run), "--size", "64",
            "--steps", str(steps), "--batch-size", "2", "--seed", "1", "--log-every", "1"]


def test_acceptance_train_resume_corrupt_and_stylize(samples, content_dir, tmp_path, capsys):
    run = tmp_path / "r"
    assert S.main(train_args(samples, content_dir, run, 4)) == 0
    assert S.main(train_args(samples, content_dir, run, 6)) == 0
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert {"content", "style", "tv", "loss"} <= set(json.loads((run / "metrics.jsonl").read_text().splitlines()[0]))
    assert "zz_corrupt.jpg" in (run / "bad_content.txt").read_text()
    assert "zz_corrupt.jpg" in capsys.readouterr().err
    snap = iu.load_image(run / "snapshots" / "step_000006.png")
    assert snap.shape[1] > snap.shape[0]  # 3 content rows x 5 strength columns
    assert snapshot_image_steps(run) == [4, 6]  # and TensorBoard shows them (the last step of each invocation)
    photo = tmp_path / "photo_333x517.jpg"
    iu.save_image(photo, gradient_image(517, 333, seed=9))  # 333 wide, 517 tall
    outs = []
    for s in ("0", "1"):
        assert S.main(["stylize", "--run-dir", str(run), str(photo), "--strength", s, "--out",
                       str(tmp_path / f"O{s}")]) == 0
        outs.append(iu.load_image(tmp_path / f"O{s}" / "photo_333x517.png"))
    assert outs[0].shape == outs[1].shape == (517, 333, 3)
    assert np.abs(outs[0] - outs[1]).mean() > 1e-4
    assert S.main(["stylize", "--run-dir", str(run), str(photo), "--sweep", "4", "--out", str(tmp_path / "sw")]) == 0
    assert iu.load_image(tmp_path / "sw" / "photo_333x517_sweep.png").shape == (517, 4 * 333, 3)
    bad = tmp_path / "bad.jpg"
    bad.write_text("x")
    assert S.main(["stylize", "--run-dir", str(run), str(photo), str(bad), "--out", str(tmp_path / "mixed")]) == 1
    assert (tmp_path / "mixed" / "photo_333x517.png").exists()
    assert "bad.jpg" in capsys.readouterr().err
    assert S.main(["stylize", "--run-dir", str(run), str(photo), "--weights", "0.5,0.2", "--out", str(tmp_path)]) == 2


def test_resume_equivalence_and_data_order(samples, content_dir, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert S.main(train_args(samples, content_dir, one, 4)) == 0
    assert S.main(train_args(samples, content_dir, two, 2)) == 0
    assert S.main(train_args(samples, content_dir, two, 4)) == 0
    a, b = R.load_stylizer(one)[0], R.load_stylizer(two)[0]
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-5)
    la = [json.loads(l)["loss"] for l in (one / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(l)["loss"] for l in (two / "metrics.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(la, lb, rtol=1e-4)


def test_preserve_color_keeps_chroma():
    content = gradient_image(20, 30)
    stylized = np.clip(gradient_image(20, 30, seed=4)[..., ::-1] * 0.8, 0, 1).astype(np.float32)
    out = A.preserve_color(stylized, content)
    ycc = lambda im: cv2.cvtColor(im.astype(np.float32), cv2.COLOR_RGB2YCrCb)
    # Where luma + chroma fall outside the RGB cube the result is clipped; everywhere else it is exact.
    inside = np.all((out > 1e-4) & (out < 1 - 1e-4), axis=-1)
    assert inside.mean() > 0.6
    np.testing.assert_allclose(ycc(out)[inside][:, 1:], ycc(content)[inside][:, 1:], atol=1e-3)
    np.testing.assert_allclose(ycc(out)[inside][:, 0], ycc(stylized)[inside][:, 0], atol=1e-3)
    # and the chroma moved to the content's overall
    assert np.abs(ycc(out)[..., 1:] - ycc(content)[..., 1:]).mean() < \
        0.3 * np.abs(ycc(stylized)[..., 1:] - ycc(content)[..., 1:]).mean()


def test_parse_weights_and_strength_means_weight_of_the_last_style():
    np.testing.assert_allclose(A.parse_weights(2, 0.25), [0.75, 0.25])
    np.testing.assert_allclose(A.parse_weights(3, 0.25), [0.75, 0.0, 0.25])  # first -> last, as --help says
    np.testing.assert_allclose(A.parse_weights(2), [0.0, 1.0])  # the default strength is 1: the last style
    np.testing.assert_allclose(A.parse_weights(3, weights="0.2,0.3,0.5"), [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match="3 values"):
        A.parse_weights(3, weights="0.5,0.5")
    names = ["starry", "scream", "wave", "muse"]
    np.testing.assert_allclose(A.parse_weights(names, weights="wave=0.25,starry=0.75"), [0.75, 0, 0.25, 0])
    np.testing.assert_allclose(A.parse_weights(names, style="muse"), [0, 0, 0, 1])
    with pytest.raises(ValueError, match=r"no style 'sky' in this net \(it has starry, scream, wave, muse\)"):
        A.parse_weights(names, weights="sky=1")
    with pytest.raises(ValueError, match="--style sky: no such style"):
        A.parse_weights(names, style="sky")
    with pytest.raises(ValueError, match="sum to 1"):
        A.parse_weights(names, weights="wave=0.5")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        A.parse_weights(2, 1.5)
    np.testing.assert_allclose(A.parse_weights(1, 0.3), [1.0])
    # float32 strengths stay float32 arithmetic (the training draws), float64 ones are rounded once
    t = np.array([0.1, 0.7], np.float32)
    np.testing.assert_array_equal(N.strength_weights(2, t)[:, 0], np.float32(1) - t)
    assert N.strength_weights(1, [0.0, 0.5, 1.0]).tolist() == [[1.0]]


def test_bad_training_inputs_exit_2(tmp_path, capsys, samples):
    assert S.main(["train", "--recipe", "seed-original", "--run-dir", str(tmp_path / "r"), "--content",
                   str(tmp_path)]) == 2
    assert "--samples DIR or --style IMG" in capsys.readouterr().err
    assert S.main(train_args(samples, tmp_path / "nocontent", tmp_path / "r2", 2)) == 2
    assert "nocontent" in capsys.readouterr().err
    assert S.main(train_args(tmp_path, tmp_path, tmp_path / "r3", 2)) == 2
    assert "manifest" in capsys.readouterr().err
    assert S.main(["train", "--samples", str(samples), "--run-dir", str(tmp_path / "r8")]) == 2
    assert "give --content" in capsys.readouterr().err and not (tmp_path / "r8").exists()
    assert S.main([*train_args(samples, tmp_path, tmp_path / "r5", 2), "--set", "end_share=1.5"]) == 2
    assert "end_share is 1.5" in capsys.readouterr().err and not (tmp_path / "r5").exists()
    assert S.main([*train_args(samples, tmp_path, tmp_path / "r7", 2), "--set", "conditioning=bogus"]) == 2
    assert "conditioning is 'bogus'" in capsys.readouterr().err and not (tmp_path / "r7").exists()


def test_broken_run_folder_is_a_one_line_error(samples, content_dir, tmp_path, capsys):
    run = tmp_path / "r"
    assert S.main(train_args(samples, content_dir, run, 1)) == 0
    (run / "config.json").write_text("{not json")
    assert S.main(["stylize", "--run-dir", str(run), str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "config.json: unreadable config" in capsys.readouterr().err
