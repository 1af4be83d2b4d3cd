import json
import os

import cv2
import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

import builtin_images
import image_utilities as iu
import vae_keras as V
import inspect_images
from conftest import gradient_image


def _save_pil(path, array_u8, mode=None, **kw):
    img = Image.fromarray(array_u8)
    if mode:
        img = img.convert(mode)
    img.save(path, **kw)
    return path


@pytest.fixture
def bad_and_good(tmp_path):
    """The acceptance folder: 3 readable (CMYK JPEG, 16-bit PNG, RGBA PNG) and 3 unreadable files."""
    u8 = (gradient_image(40, 60) * 255).astype(np.uint8)
    _save_pil(tmp_path / "cmyk.jpg", u8, mode="CMYK", quality=95)
    deep = (gradient_image(30, 20) * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "deep16.png"), deep[..., ::-1])  # a true 16-bit RGB PNG (OpenCV writes BGR)
    rgba = np.dstack([u8, np.full(u8.shape[:2], 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    full = tmp_path / "full.jpg"
    _save_pil(full, u8, quality=95)
    data = full.read_bytes()
    full.unlink()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("this is not a picture\n")
    return tmp_path


def test_readable_formats_have_expected_values(bad_and_good):
    cmyk = iu.load_image(bad_and_good / "cmyk.jpg")
    assert cmyk.shape == (40, 60, 3) and cmyk.dtype == np.float32
    ref = gradient_image(40, 60)
    assert np.abs(cmyk - ref).mean() < 0.05  # CMYK round trip through JPEG keeps the picture

    deep = iu.load_image(bad_and_good / "deep16.png")
    want = (gradient_image(30, 20) * 65535).astype(np.uint16).astype(np.float32) / 65535
    assert deep.shape == (30, 20, 3)
    # 16-bit precision is kept: much finer than 8-bit quantisation (1/255)
    assert np.abs(deep[..., 0] - want[..., 0]).max() < 1e-4
    np.testing.assert_allclose(deep[..., 1], want[..., 1], atol=1e-4)

    alpha = iu.load_image(bad_and_good / "alpha.png")
    u8 = (gradient_image(40, 60) * 255).astype(np.uint8).astype(np.float32) / 255
    a = 128 / 255
    np.testing.assert_allclose(alpha, u8 * a + (1 - a), atol=2 / 255)  # composited on white


@pytest.mark.parametrize("name,reason", [("truncated.jpg", "truncated"), ("empty.jpg", "empty file"),
                                         ("notes.jpg", "not a recognised image")])
def test_bad_files_raise_with_name_and_reason(bad_and_good, name, reason):
    with pytest.raises(iu.ImageError) as e:
        iu.load_image(bad_and_good / name)
    assert name in str(e.value) and reason in str(e.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(iu.ImageError, match="no such file"):
        iu.load_image(tmp_path / "nope.png")
    with pytest.raises(iu.ImageError, match="is a directory"):
        iu.load_image(tmp_path)


def test_pixel_cap(tmp_path):
    p = _save_pil(tmp_path / "big.png", np.zeros((50, 40, 3), np.uint8))
    with pytest.raises(iu.ImageError, match="over the limit"):
        iu.load_image(p, max_pixels=1000)
    assert iu.load_image(p, max_pixels=2000).shape == (50, 40, 3)


def test_exif_orientation_is_applied(tmp_path):
    # Stored 20 wide x 10 tall with a red top-left corner; orientation 6 means "rotate 90 clockwise to display".
    a = np.zeros((10, 20, 3), np.uint8)
    a[:3, :3] = [255, 0, 0]
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(a).save(tmp_path / "rot.jpg", exif=exif, quality=100)
    img = iu.load_image(tmp_path / "rot.jpg")
    assert img.shape == (20, 10, 3)  # upright: now tall
    assert img[1, -2, 0] > 0.8 and img[1, -2, 1] < 0.3  # the red corner moved to the top-right


def test_grayscale_palette_gif_webp_bmp_tiff(tmp_path):
    u8 = (gradient_image(16, 24) * 255).astype(np.uint8)
    paths = [
        _save_pil(tmp_path / "g.jpg", u8, mode="L", quality=95),
        _save_pil(tmp_path / "p.png", u8, mode="P"),
        _save_pil(tmp_path / "a.webp", u8, lossless=True),
        _save_pil(tmp_path / "a.bmp", u8),
        _save_pil(tmp_path / "a.tiff", u8),
    ]
    frames = [Image.fromarray(np.full((16, 24, 3), v, np.uint8)) for v in (10, 200)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    for p in paths:
        im = iu.load_image(p)
        assert im.shape == (16, 24, 3), p
    np.testing.assert_allclose(iu.load_image(tmp_path / "a.webp"), u8 / 255.0, atol=1e-6)
    first = iu.load_image(tmp_path / "anim.gif")
    assert abs(first.mean() - 10 / 255) < 0.02  # first frame, not the second


def test_save_roundtrip_and_atomic_failure(tmp_path, monkeypatch):
    img = gradient_image(12, 9)
    out = tmp_path / "sub" / "x.png"
    iu.save_image(out, img)
    np.testing.assert_allclose(iu.load_image(out), img, atol=0.5 / 255 + 1e-6)
    before = out.read_bytes()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        iu.save_image(out, np.zeros((12, 9, 3), np.float32))
    with pytest.raises(OSError):
        iu.save_image(tmp_path / "sub" / "new.jpg", img)
    with pytest.raises(OSError):
        iu.atomic_write_npz(tmp_path / "sub" / "x.npz", {"a": np.arange(3)})
    assert out.read_bytes() == before  # the old file is untouched
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask  # the mode a plain open() gives, not mkstemp's 0600
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["x.png"]  # no partial or temp file
    monkeypatch.undo()
    iu.atomic_write_npz(tmp_path / "sub" / "x.npz", {"a": np.arange(3), "names": np.array(["p", "q"])})
    with np.load(tmp_path / "sub" / "x.npz") as z:
        assert z["a"].tolist() == [0, 1, 2] and z["names"].tolist() == ["p", "q"]


def test_crops_and_resize(rng):
    img = gradient_image(100, 150)
    c = iu.center_crop(img, 64)
    assert c.shape == (64, 64, 3)
    np.testing.assert_array_equal(c, img[18:82, 43:107])
    for _ in range(5):
        r = iu.random_crop(img, 32, rng, scale=(0.8, 2.0), flip=True, rotate90=True)
        assert r.shape == (32, 32, 3) and r.dtype == np.float32
    small = iu.center_crop(gradient_image(20, 30), 64)  # enlarged first
    assert small.shape == (64, 64, 3)
    # square_crop scales the shorter side to the size first: a 100x150 image keeps all its height
    np.testing.assert_allclose(iu.square_crop(img, 50), iu.resize(img, 50, 75)[:, 12:62], atol=1e-6)
    # and keeps the aspect: a 8x16 image becomes its middle square, not a squashed one
    tall = np.concatenate([np.zeros((4, 8, 3)), np.ones((8, 8, 3)), np.zeros((4, 8, 3))]).astype(np.float32)
    np.testing.assert_allclose(iu.square_crop(tall, 8), 1.0, atol=1e-6)
    # Area filter on shrink: a 2x2 checkerboard averages to flat grey, no aliasing.
    checker = (np.indices((64, 64)).sum(0) % 2).astype(np.float32)[..., None].repeat(3, 2)
    np.testing.assert_allclose(iu.resize(checker, 16, 16), 0.5, atol=1e-6)


def test_grid_and_quad_shapes():
    a, b = gradient_image(20, 30), gradient_image(10, 10)
    g = iu.image_grid([a, b, a], cols=2, pad=2)
    assert g.shape == (2 * 20 + 3 * 2, 2 * 30 + 3 * 2, 3)
    q = V.quad_figure(a, a, a, a)
    assert q.shape == (2 * 20 + 3 * 4, 2 * 30 + 3 * 4, 3)
    assert not np.allclose(q[4:24, 4:34], a)  # the label was drawn


def test_gif_frames_in_numeric_order(tmp_path):
    for i in range(1, 13):
        iu.save_image(tmp_path / f"snap_{i}.png", np.full((8, 8, 3), i * 20 / 255, np.float32))
    iu.save_image(tmp_path / "snap_13.png", np.full((16, 16, 3), 0.0, np.float32))  # other size: resized
    (tmp_path / "readme.txt").write_text("not a frame")
    (tmp_path / "snap_14.png").write_text("broken")
    n, skipped = iu.make_gif(tmp_path, tmp_path / "out.gif", fps=5)
    assert (n, skipped) == (13, 1)
    frames = iio.imread(tmp_path / "out.gif", index=None)
    assert frames.shape[:3] == (13, 8, 8)
    levels = frames[:12, 0, 0, 0].astype(int)
    assert list(levels) == sorted(levels) and abs(levels[0] - 20) <= 2 and abs(levels[-1] - 240) <= 2


def test_gif_cli_twelve_frames(tmp_path, capsys):
    for i in range(1, 13):
        iu.save_image(tmp_path / f"snap_{i}.png", np.full((6, 6, 3), i / 13, np.float32))
    assert iu.main(["gif", str(tmp_path), str(tmp_path / "a.gif"), "--fps", "6"]) == 0
    frames = iio.imread(tmp_path / "a.gif", index=None)
    assert frames.shape[0] == 12
    assert np.all(np.diff(frames[:, 0, 0, 0].astype(int)) > 0)


def test_inspect_json_acceptance(bad_and_good, capsys, tmp_path):
    sheet = tmp_path / "sheet.png"
    assert inspect_images.main([str(bad_and_good), "--json", "--sheet", str(sheet)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["readable"] == 3
    assert sorted(u["file"] for u in report["unreadable"]) == ["empty.jpg", "notes.jpg", "truncated.jpg"]
    assert all(u["reason"] for u in report["unreadable"])
    assert "manifest" not in report  # not a style-sample folder
    assert iu.load_image(sheet).shape == (2 * 96 + 3 * 2, 2 * 96 + 3 * 2, 3)  # 3 thumbnails, 2 per row


def test_inspect_statistics_and_duplicates(tmp_path):
    a = gradient_image(32, 32)
    iu.save_image(tmp_path / "a.png", a)
    iu.save_image(tmp_path / "a_copy.png", np.clip(a + 0.01, 0, 1))
    iu.save_image(tmp_path / "flat.png", np.full((16, 8, 3), [0.2, 0.4, 0.6], np.float32))
    r = inspect_images.inspect(tmp_path)
    assert r["near_duplicates"] == [["a.png", "a_copy.png"]]
    assert r["sizes"] == {"32x32": 2, "8x16": 1}
    # colour statistics over every pixel of the readable files, as the files hold them
    pixels = np.concatenate([iu.load_image(tmp_path / n).reshape(-1, 3) for n in ("a.png", "a_copy.png", "flat.png")])
    np.testing.assert_allclose(r["channel_mean"], pixels.mean(0), atol=1e-4)
    np.testing.assert_allclose(r["channel_std"], pixels.std(0), atol=1e-4)


def test_inspect_errors_exit_2(tmp_path, capsys):
    assert inspect_images.main([str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    assert inspect_images.main([str(tmp_path)]) == 2  # empty folder
    assert "no image files" in capsys.readouterr().err


def test_default_styles_are_deterministic_and_distinct(tmp_path, capsys):
    s1, s2 = builtin_images.default_styles(64), builtin_images.default_styles(64)
    assert set(s1) == {"night_swirls", "honeycomb"}
    for k in s1:
        assert s1[k].shape == (64, 64, 3)
        np.testing.assert_array_equal(s1[k], s2[k])
    # The night sky is blue, the honeycomb amber.
    assert s1["night_swirls"][..., 2].mean() > s1["night_swirls"][..., 0].mean()
    assert s1["honeycomb"][..., 0].mean() > s1["honeycomb"][..., 2].mean()
    content = builtin_images.default_content(48)
    assert len(content) >= 3 and all(v.shape == (48, 48, 3) for v in content.values())
    assert builtin_images.main(["--out", str(tmp_path), "--size", "32"]) == 0
    assert sorted(p.name for p in (tmp_path / "styles").iterdir()) == ["honeycomb.png", "night_swirls.png"]
    np.testing.assert_allclose(iu.load_image(tmp_path / "styles" / "honeycomb.png"),
                               builtin_images.honeycomb(32), atol=0.5 / 255 + 1e-6)
