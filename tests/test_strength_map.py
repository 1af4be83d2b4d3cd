"""Per-pixel style weights: --strength-map / --weights-map, through tiles and the exported model."""
import numpy as np
import pytest
import tensorflow as tf

import image_utilities as iu
import stylizer as S
import stylizer_run as R
import stylizer_apply as A
import stylizer_net as N
from conftest import gradient_image, save_as_run, styled_net


def half_map(h, w):
    m = np.zeros((h, w), np.float32)
    m[:, w // 2:] = 1.0
    return np.stack([1.0 - m, m], -1)


@pytest.mark.parametrize("conditioning", ["channels", "cin"])
def test_each_half_of_a_half_and_half_map_looks_like_its_own_strength(conditioning):
    net = styled_net(conditioning)
    image = gradient_image(96, 192, seed=3)
    out = A.stylize_map(net, image, half_map(96, 192))
    s0, s1 = A.stylize_array(net, image, [1, 0]), A.stylize_array(net, image, [0, 1])
    for region, ref in ((slice(0, 96 - 32), s0), (slice(96 + 32, 192), s1)):
        error = np.abs(out[:, region] - ref[:, region]).mean()
        apart = np.abs(s0[:, region] - s1[:, region]).mean()
        assert apart > 0.02  # the two strengths differ, so the ratio means something
        assert error <= 0.2 * apart, (conditioning, error / apart)
    # Without the per-pixel statistics, instance norm mixes the halves: the measure has teeth.
    with N.per_pixel_weights(net, half_map(96, 192)):
        plain = A.stylize_array(net, image, [1, 0])
    region = slice(96 + 32, 192)
    assert np.abs(plain[:, region] - s1[:, region]).mean() > 0.2 * np.abs(s0[:, region] - s1[:, region]).mean()


def test_a_uniform_map_equals_the_strength_and_a_ramp_moves_gradually():
    net = styled_net("channels")
    image = gradient_image(64, 160, seed=4)
    for s in (0.0, 0.3, 1.0):
        uniform = np.stack([np.full((64, 160), 1 - s), np.full((64, 160), s)], -1).astype(np.float32)
        np.testing.assert_allclose(A.stylize_map(net, image, uniform), A.stylize_array(net, image, [1 - s, s]),
                                   atol=2e-4)
    ramp = np.tile(np.linspace(0, 1, 160, dtype=np.float32), (64, 1))
    out = A.stylize_map(net, image, np.stack([1 - ramp, ramp], -1))
    s0, s1 = A.stylize_array(net, image, [1, 0]), A.stylize_array(net, image, [0, 1])
    # Distance to the strength-1 result falls steadily from left to right: no seam, no jump.
    columns = np.abs(out - s1).mean(axis=(0, 2)) / np.abs(s0 - s1).mean(axis=(0, 2))
    blocks = columns.reshape(8, 20).mean(1)
    assert np.all(np.diff(blocks) < 0.02) and blocks[0] > 0.6 and blocks[-1] < 0.4
    assert np.abs(np.diff(blocks)).max() < 3 * np.abs(np.diff(blocks)).mean()


def test_map_through_tiles_and_three_styles():
    net = styled_net("channels", 3)
    image = gradient_image(120, 150, seed=5)
    y, x = np.mgrid[0:120, 0:150].astype(np.float32)
    raw = np.stack([x / 149, y / 119, np.full_like(x, 0.3)], -1)
    weight_map = raw / raw.sum(-1, keepdims=True)
    whole = A.stylize_map(net, image, weight_map)
    tiled = A.tiled_stylize(net, image, None, 64, weight_map=weight_map)
    uniform = [1 / 3, 1 / 3, 1 / 3]
    single = A.stylize_array(net, image, uniform)
    # Tiles of this untrained, strongly conditioned net are not exact even without a map (its receptive field
    # outgrows the margin): the map adds no error of its own, and the result is the map's, not the uniform one.
    plain_error = np.abs(A.tiled_stylize(net, image, uniform, 64) - single).mean()
    assert np.abs(tiled - whole).mean() <= 1.2 * plain_error
    assert np.abs(tiled - whole).mean() < 0.3 * np.abs(whole - single).mean()


def test_exported_model_takes_a_weight_map(tmp_path):
    net = styled_net("channels")
    A.export(net, 2, tmp_path / "exp")
    serve_map = tf.saved_model.load(str(tmp_path / "exp" / "saved_model")).signatures["serving_map"]
    image = gradient_image(64, 96, seed=6)
    weight_map = half_map(64, 96)
    out = serve_map(image=tf.constant(image[None]), weight_map=tf.constant(weight_map[None]))["image"][0].numpy()
    np.testing.assert_allclose(out, A.stylize_map(net, image, weight_map), atol=1e-4)


def test_stylize_cli_with_maps_and_bad_maps(tmp_path, capsys):
    run = save_as_run(styled_net("balance"), "balance", tmp_path / "run")
    photo = tmp_path / "p.png"
    iu.save_image(photo, gradient_image(64, 96, seed=7))
    m = half_map(64, 96)[..., 1]
    iu.save_image(tmp_path / "map.png", np.repeat(m[..., None], 3, -1))
    assert S.main(["stylize", "--run-dir", str(run), str(photo), "--strength-map", str(tmp_path / "map.png"),
                   "--out", str(tmp_path / "o")]) == 0
    got = iu.load_image(tmp_path / "o" / "p.png")
    expected = A.stylize_map(R.load_stylizer(run)[0], iu.load_image(photo), half_map(64, 96))
    assert np.abs(got - expected).mean() < 2 / 255
    iu.save_image(tmp_path / "small.png", np.repeat(m[::4, ::4, None], 3, -1))  # resized to each input
    assert S.main(["stylize", "--run-dir", str(run), str(photo), "--strength-map", str(tmp_path / "small.png"),
                   "--tile", "32", "--preserve-color", "--out", str(tmp_path / "t")]) == 0
    assert iu.load_image(tmp_path / "t" / "p.png").shape == (64, 96, 3)
    # Bad maps: one line naming the file, exit 2.
    (tmp_path / "junk.png").write_bytes(b"not a png")
    iu.save_image(tmp_path / "colour.png", gradient_image(16, 16))
    iu.save_image(tmp_path / "zero.png", np.zeros((16, 16, 3), np.float32))
    for flag, value, words in (("--strength-map", "junk.png", "junk.png"), ("--strength-map", "colour.png",
                                                                           "has colour"),
                               ("--weights-map", "zero.png,zero.png", "all zero"),
                               ("--weights-map", "zero.png", "needs 2 maps")):
        value = ",".join(str(tmp_path / v) for v in value.split(","))
        assert S.main(["stylize", "--run-dir", str(run), str(photo), flag, value, "--out",
                       str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
