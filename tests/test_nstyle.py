"""N styles in one network: a four-style net trained by direct mixing, each style alone a picture of its own, styles
picked and mixed by name, and the mixing draw's pairs."""
import numpy as np
import pytest

import builtin_images
import image_utilities as iu
import stylizer as S
import stylizer_data as D
import stylizer_run as R
from conftest import gradient_image


@pytest.fixture(scope="module")
def four_style_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("nstyle")
    colours = {"red": [0.9, 0.1, 0.1], "green": [0.1, 0.8, 0.2], "blue": [0.1, 0.2, 0.9], "stripes": None}
    styles = []
    for name, colour in colours.items():
        image = gradient_image(48, 48, seed=len(styles)) if colour is None else np.full((48, 48, 3), colour,
                                                                                         np.float32)
        if colour is None:
            image[::4] = 0.0  # dark stripes
        styles.append(str(iu.save_image(d / f"{name}.png", image)))
    for name, im in builtin_images.default_content(40).items():
        iu.save_image(d / "content" / f"{name}.png", im)
    run = d / "run"
    args = ["train", *[a for s in styles for a in ("--style", s)], "--content", str(d / "content"), "--run-dir",
            str(run), "--size", "32", "--steps", "60", "--batch-size", "4", "--lr", "5e-3", "--log-every", "20",
            "--set", "snapshot_every=1000", "--precision", "float32"]
    assert S.main(args) == 0
    return run, d


def test_each_of_four_styles_alone_gives_its_own_picture(four_style_run, tmp_path):
    run, d = four_style_run
    net, config, names = R.load_stylizer(run)
    assert names == ["red", "green", "blue", "stripes"] and config.conditioning == "cin"
    photo = iu.save_image(tmp_path / "photo.png", gradient_image(40, 40, seed=9))
    pictures = {}
    for name in names:
        assert S.main(["stylize", "--run-dir", str(run), str(photo), "--style", name, "--out",
                       str(tmp_path / name)]) == 0
        pictures[name] = iu.load_image(tmp_path / name / "photo.png")
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(pictures[a] - pictures[b]).mean() > 0.01, (a, b)
    reds = [picture[..., 0].mean() - picture[..., 2].mean() for picture in pictures.values()]
    assert reds[0] > reds[2]  # the red style's picture is redder than the blue style's
    # a mixture by name is the CLI's --weights in order
    assert S.main(["stylize", "--run-dir", str(run), str(photo), "--weights", "green=0.5,blue=0.5", "--out",
                   str(tmp_path / "named")]) == 0
    assert S.main(["stylize", "--run-dir", str(run), str(photo), "--weights", "0,0.5,0.5,0", "--out",
                   str(tmp_path / "numbered")]) == 0
    np.testing.assert_array_equal(iu.load_image(tmp_path / "named" / "photo.png"),
                                  iu.load_image(tmp_path / "numbered" / "photo.png"))


def test_a_style_name_the_net_does_not_have_is_one_line(four_style_run, tmp_path, capsys):
    run, _ = four_style_run
    photo = iu.save_image(tmp_path / "photo.png", gradient_image(40, 40))
    for extra in (["--weights", "red=0.5,purple=0.5"], ["--style", "purple"]):
        assert S.main(["stylize", "--run-dir", str(run), str(photo), *extra, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "purple" in err[0] and "red, green, blue, stripes" in err[0], err
    assert not (tmp_path / "o").exists()


def test_mixing_n_styles_draws_pairs_and_pure_styles():
    """Direct mixing of N style images: every example weighs one or two styles (a pair at a strength t, or a single
    painting for the end share), and its Gram target is the same mix of the paintings' Grams."""
    config = R.StylizerConfig(style_images=tuple(f"s{k}.png" for k in range(5)), end_share=0.5)
    targets = D.StyleTargets.__new__(D.StyleTargets)  # the draw alone, on hand-made Grams
    targets.layers, targets.mode, targets.names = ["g"], "images", [f"s{k}" for k in range(5)]
    targets.num_styles, targets.ends_only, targets.end_share = 5, False, config.end_share
    targets.image_grams = [{"g": np.full((1, 2, 2), float(k))} for k in range(5)]
    weights, grams = targets.batch(np.random.default_rng(0), 400)
    nonzero = (weights > 0).sum(1)
    assert set(nonzero) <= {1, 2} and np.allclose(weights.sum(1), 1.0)
    assert 0.35 < (nonzero == 1).mean() < 0.65  # about half at a pure style
    np.testing.assert_allclose(grams["g"][:, 0, 0], weights @ np.arange(5.0), rtol=1e-6)
    pairs = {tuple(np.flatnonzero(w)) for w in weights if (w > 0).sum() == 2}
    assert len(pairs) == 10  # every pair of the five styles is drawn
