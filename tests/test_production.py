"""Inference features: seamless tiles, video, SavedModel/TFLite export, Gatys optimisation, evaluate."""
import json

import cv2
import numpy as np
import pytest
import tensorflow as tf

import builtin_images
import image_utilities as iu
import stylizer as S
import stylizer_run as R
import stylizer_apply as A
import stylizer_eval as E
import stylizer_net as N
from conftest import gradient_image


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small two-style run (direct Gram mixing of two built-in styles) trained a few dozen steps."""
    d = tmp_path_factory.mktemp("prod")
    written = builtin_images.write_defaults(d, 64)  # d/styles/*.png and d/content/*.png
    styles = [arg for p in written["styles"] for arg in ("--style", str(p))]
    run = d / "run"
    assert S.main(["train", "--recipe", "seed-original", *styles, "--content", str(d / "content"), "--run-dir",
                   str(run), "--size", "48",
                   "--steps", "30", "--batch-size", "2", "--lr", "2e-3", "--log-every", "30"]) == 0
    return run, d


def test_tiles_match_untiled(trained):
    run, _ = trained
    net, _, _ = R.load_stylizer(run)
    image = iu.resize(gradient_image(300, 300, seed=2), 320, 288)
    full = A.stylize_array(net, image, [0.4, 0.6])
    tiled = A.tiled_stylize(net, image, [0.4, 0.6], tile=96)
    assert tiled.shape == full.shape
    assert np.abs(tiled - full).mean() < 0.01
    # without shared statistics each tile normalises itself and the pieces disagree
    naive = np.zeros_like(full)
    for top in (0, 160):
        for left in (0, 144):
            naive[top:top + 160, left:left + 144] = A.stylize_array(net, image[top:top + 160, left:left + 144],
                                                                    [0.4, 0.6])
    assert np.abs(naive - full).mean() > 3 * np.abs(tiled - full).mean()
    # the norm layers are back to their own statistics afterwards: a piece stylizes as it did before tiling
    np.testing.assert_array_equal(A.stylize_array(net, image[:160, :144], [0.4, 0.6]), naive[:160, :144])


def test_norm_modes_are_scoped_to_their_block(trained):
    run, _ = trained
    net, _, _ = R.load_stylizer(run)
    whole, piece = gradient_image(64, 80, seed=3), gradient_image(64, 80, seed=3)[:32, :40]
    own = A.stylize_array(net, piece, [0.5, 0.5])
    with N.recording_statistics(net) as stats:
        A.stylize_array(net, whole, [0.5, 0.5])
    assert len(stats) == len(N.instance_norms(net)) > 0
    with N.fixed_statistics(net, stats):
        shared = A.stylize_array(net, piece, [0.5, 0.5])
    assert np.abs(shared - own).mean() > 1e-3  # normalised with the whole image's statistics, not its own
    with pytest.raises(RuntimeError), N.fixed_statistics(net, stats):
        raise RuntimeError("an error inside the block")
    with N.unfused_norms(net):
        unfused = A.stylize_array(net, piece, [0.5, 0.5])
    np.testing.assert_allclose(unfused, own, atol=1e-5)  # moments and fused batch norm agree
    np.testing.assert_array_equal(A.stylize_array(net, piece, [0.5, 0.5]), own)  # every mode was undone


def test_tile_cli(trained, tmp_path, capsys):
    run, _ = trained
    iu.save_image(tmp_path / "big.png", gradient_image(200, 260))
    assert S.main(["stylize", "--run-dir", str(run), str(tmp_path / "big.png"), "--tile", "64", "--out",
                   str(tmp_path / "o")]) == 0
    assert iu.load_image(tmp_path / "o" / "big.png").shape == (200, 260, 3)
    assert "peak memory" in capsys.readouterr().out


def test_video_same_frames_size_fps(trained, tmp_path):
    run, _ = trained
    src = tmp_path / "in.mp4"
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 12, (64, 64))
    for i in range(8):
        writer.write(np.full((64, 64, 3), 20 + i * 25, np.uint8))
    writer.release()
    out = tmp_path / "out.mp4"
    assert S.main(["stylize", "--run-dir", str(run), "--video", str(src), "--out", str(out),
                   "--strength-ramp", "0:1"]) == 0
    cap = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    assert len(frames) == 8 and frames[0].shape == (64, 64, 3)
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12, abs=0.01)
    assert not list(tmp_path.glob(".*partial*"))
    bad = tmp_path / "bad.mp4"
    bad.write_text("no video")
    assert S.main(["stylize", "--run-dir", str(run), "--video", str(bad), "--out", str(tmp_path / "b.mp4")]) == 1


def test_export_savedmodel_and_tflite_match_stylize(trained, tmp_path):
    run, _ = trained
    assert S.main(["export", "--run-dir", str(run), "--out", str(tmp_path / "ex"), "--tflite"]) == 0
    net, _, _ = R.load_stylizer(run)
    x = np.random.default_rng(0).random((1, 100, 150, 3)).astype(np.float32)
    w = np.array([0.3, 0.7], np.float32)
    ref = A.stylize_array(net, x[0], w)
    served = tf.saved_model.load(str(tmp_path / "ex" / "saved_model")).signatures["serving_default"]
    y = served(image=tf.constant(x), weights=tf.constant(w))["image"].numpy()
    assert y.shape == (1, 100, 150, 3)
    np.testing.assert_allclose(y[0], ref, atol=1e-4)
    interp = tf.lite.Interpreter(model_path=str(tmp_path / "ex" / "stylizer.tflite"))
    inputs = {d["name"]: d["index"] for d in interp.get_input_details()}
    interp.resize_tensor_input(inputs["image"], [1, 100, 150, 3])
    interp.allocate_tensors()
    interp.set_tensor(inputs["image"], x)
    interp.set_tensor(inputs["weights"], w)
    interp.invoke()
    lite = interp.get_tensor(interp.get_output_details()[0]["index"])
    np.testing.assert_allclose(lite[0], ref, atol=1e-4)


def test_optimize_lowers_style_loss(tmp_path, capsys):
    iu.save_image(tmp_path / "c.png", gradient_image(64, 64))
    iu.save_image(tmp_path / "s1.png", builtin_images.default_styles(64)["honeycomb"])
    iu.save_image(tmp_path / "s2.png", builtin_images.default_styles(64)["night_swirls"])
    assert S.main(["optimize", str(tmp_path / "c.png"), "--style", str(tmp_path / "s1.png"),
                   "--style", str(tmp_path / "s2.png"), "--weights", "0.7,0.3", "--iters", "20", "--max-side", "64",
                   "--out", str(tmp_path / "o.png")]) == 0
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("wrote")][0]
    before, after = (float(v) for v in line.split("style loss ")[1].split(",")[0].split(" -> "))
    assert after < before
    assert iu.load_image(tmp_path / "o.png").shape == (64, 64, 3)


def test_evaluate_json_plot_and_sweep(trained, tmp_path, capsys):
    run, d = trained
    out = tmp_path / "ev.json"
    assert S.main(["evaluate", "--run-dir", str(run), "--content", str(d / "content"), "--strengths", "5",
                   "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["per_strength"]
    assert [r["strength"] for r in rows] == [0, 0.25, 0.5, 0.75, 1.0]
    for key in ("style_loss_to_A", "style_loss_to_B", "content_loss", "lpips_to_content", "images_per_s"):
        assert all(np.isfinite(r[key]) for r in rows)
    # the output moves steadily away from the strength-0 output and towards the strength-1 output
    away = [r["lpips_to_strength_0"] for r in rows[1:]]
    towards = [r["lpips_to_strength_1"] for r in rows[:-1]]
    assert away == sorted(away) and towards == sorted(towards, reverse=True)
    assert result["spearman_strength_vs_lpips_to_strength_0"] == pytest.approx(1.0)
    plot = iu.load_image(tmp_path / "ev.png")  # three panels of curves side by side
    assert plot.shape[1] > 2.5 * plot.shape[0] and plot.std() > 0.02
    printed = capsys.readouterr().out
    spearman = float(printed.split("spearman(strength, style loss to A) = ")[1].split()[0])
    assert spearman == pytest.approx(result["spearman_strength_vs_style_loss_to_A"], abs=1e-3)


def test_spearman():
    assert E.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert E.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert E.spearman([1, 2, 3], [1, 1, 2]) == pytest.approx(0.866, abs=1e-3)
