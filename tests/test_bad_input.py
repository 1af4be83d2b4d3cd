"""Bad input gets one line naming the file (or flag) and what is wrong, exit code 2, and never costs a user's files:
export into a folder that holds other files, read-only folders, images too small for the network, broken run
files, NaN pixels, files a sample manifest names outside its folder."""
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import image_utilities as iu
import sample_folder
import style_sampler as SS
import stylizer as S
import vae_keras as V
from conftest import gradient_image, save_as_run, styled_net


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A two-style stylizer run folder (untrained, strongly conditioned)."""
    return save_as_run(styled_net("cin"), "cin", tmp_path_factory.mktemp("bad_input") / "run")


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory, style_files):
    """A VAE trained for one step, with its latents."""
    run = tmp_path_factory.mktemp("bad_input_vae") / "vae"
    assert V.main(["train", "--recipe", "seed-original", "--run-dir", str(run), "--style", style_files[0], "--style",
                   style_files[1],
                   "--size", "32", "--steps", "1", "--batch-size", "4", "--set", "encode_crops=8"]) == 0
    return run


@pytest.fixture
def read_only(tmp_path):
    """A folder nothing can be written into. As root (CI's containers), file modes do not stop writes, so sysfs
    stands in: the kernel refuses to create files there for any user."""
    if os.geteuid() != 0:
        folder = tmp_path / "read_only"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
    else:
        yield Path("/sys/kernel")


def one_line_error(capsys, *expected: str):
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    for text in expected:
        assert text in err[0], (text, err[0])
    return err[0]


def photo(path: Path, h=48, w=48) -> Path:
    iu.save_image(path, gradient_image(h, w))
    return path


# ---- export never deletes what it did not write -------------------------------------------------------------------

def test_export_refuses_a_folder_holding_other_files(run, tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "thesis.txt").write_text("precious")
    assert S.main(["export", "--run-dir", str(run), "--out", str(docs)]) == 2
    one_line_error(capsys, str(docs), "not empty")
    assert S.main(["export", "--run-dir", str(run), "--out", str(docs), "--overwrite"]) == 2
    one_line_error(capsys, str(docs), "not empty")
    assert sorted(p.name for p in docs.iterdir()) == ["thesis.txt"] and (docs / "thesis.txt").read_text() == "precious"
    target = tmp_path / "notes.txt"
    target.write_text("a file")
    assert S.main(["export", "--run-dir", str(run), "--out", str(target)]) == 2
    one_line_error(capsys, str(target), "is a file")
    assert target.read_text() == "a file"


def test_export_replaces_only_its_own_files_and_only_with_overwrite(run, tmp_path, capsys):
    out = tmp_path / "exported"
    out.mkdir()  # an empty folder is fine
    assert S.main(["export", "--run-dir", str(run), "--out", str(out), "--tflite"]) == 0
    record = json.loads((out / "export.json").read_text())
    assert record["files"] == ["saved_model", "stylizer.tflite"] and record["style_names"] == ["style_0", "style_1"]
    (out / "README.txt").write_text("mine")  # the user's own file beside the export
    first = (out / "saved_model" / "saved_model.pb").stat().st_mtime_ns
    assert S.main(["export", "--run-dir", str(run), "--out", str(out)]) == 2
    one_line_error(capsys, "earlier export", "--overwrite")
    assert (out / "stylizer.tflite").exists() and (out / "saved_model" / "saved_model.pb").stat().st_mtime_ns == first
    assert S.main(["export", "--run-dir", str(run), "--out", str(out), "--overwrite"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["README.txt", "export.json", "saved_model"]  # the old .tflite was the export's; no temp left
    assert (out / "README.txt").read_text() == "mine"
    assert (out / "saved_model" / "saved_model.pb").stat().st_mtime_ns != first
    # An export.json that names other files (hand-edited, or a folder sent by someone) costs nothing of theirs, and a
    # killed export's temporary folder does not block the next one.
    (out / "export.json").write_text(json.dumps({"files": ["..", "", "README.txt"]}))
    (out / ".export-killed.tmp").mkdir()
    (tmp_path / "sibling.txt").write_text("beside the export")
    assert S.main(["export", "--run-dir", str(run), "--out", str(out), "--overwrite", "--tflite"]) == 0
    assert (tmp_path / "sibling.txt").read_text() == "beside the export" and (out / "README.txt").exists()
    assert sorted(p.name for p in out.iterdir()) == ["README.txt", "export.json", "saved_model", "stylizer.tflite"]
    fresh = tmp_path / "fresh"
    (fresh / ".export-killed.tmp").mkdir(parents=True)
    assert S.main(["export", "--run-dir", str(run), "--out", str(fresh)]) == 0
    assert sorted(p.name for p in fresh.iterdir()) == ["export.json", "saved_model"]


# ---- read-only folders --------------------------------------------------------------------------------------------

def test_read_only_outputs_and_run_folders_are_one_line(run, vae_run, read_only, tmp_path, style_files, capsys):
    image = photo(tmp_path / "p.png")
    target = read_only / "multistyle_test_out"
    assert S.main(["stylize", "--run-dir", str(run), str(image), "--out", str(target)]) in (1, 2)
    one_line_error(capsys, "multistyle_test_out")
    assert S.main(["export", "--run-dir", str(run), "--out", str(target)]) == 2
    one_line_error(capsys, "multistyle_test_out", "permission denied")
    assert SS.main(["--vae", str(vae_run), "--out", str(target), "--pairs", "1", "--points", "2"]) == 2
    one_line_error(capsys, "multistyle_test_out", "permission denied")
    assert V.main(["train", "--recipe", "seed-original", "--run-dir", str(target), "--style", style_files[0],
                   "--size", "32", "--steps", "1"]) == 2
    one_line_error(capsys, "multistyle_test_out", "permission denied")
    assert S.main(["train", "--recipe", "seed-original", "--style", style_files[0], "--content", str(tmp_path),
                   "--run-dir", str(target),
                   "--size", "32", "--steps", "1"]) == 2
    one_line_error(capsys, "multistyle_test_out", "permission denied")
    assert not target.exists()


# ---- images the network cannot take --------------------------------------------------------------------------------

@pytest.mark.parametrize("side", [1, 2])
def test_a_tiny_image_is_skipped_and_counted_not_a_traceback(run, tmp_path, capsys, side):
    tiny, good = photo(tmp_path / "tiny.png", side, side), photo(tmp_path / "good.png")
    out = tmp_path / "out"
    assert S.main(["stylize", "--run-dir", str(run), str(tiny), str(good), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{tiny}: {side}x{side} is too small" in err and "1 of 2 inputs failed" in err
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]
    assert S.main(["stylize", "--run-dir", str(run), str(tiny), "--tile", "32", "--out", str(out)]) == 1
    assert "too small" in capsys.readouterr().err


def test_a_tiny_video_and_a_negative_max_side_are_one_line(run, tmp_path, capsys):
    import cv2

    clip = tmp_path / "tiny.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 5, (4, 4))
    for _ in range(3):
        writer.write(np.zeros((4, 4, 3), np.uint8))
    writer.release()
    assert S.main(["stylize", "--run-dir", str(run), "--video", str(clip), "--out", str(tmp_path / "o.mp4")]) == 1
    assert "too small" in capsys.readouterr().err
    assert not list(tmp_path.glob("*o.partial*")) and not (tmp_path / "o.mp4").exists()
    assert S.main(["stylize", "--run-dir", str(run), str(photo(tmp_path / "p.png")), "--max-side", "-5", "--out",
                   str(tmp_path / "o")]) == 2
    one_line_error(capsys, "--max-side -5")


# ---- broken run files and NaN pixels -------------------------------------------------------------------------------

def copy_run(run: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, tmp_path / "copy"))


def test_broken_styles_json_names_the_file(run, tmp_path, capsys):
    copy = copy_run(run, tmp_path)
    image = photo(tmp_path / "p.png")
    for record, reason in (({"num_styles": 2}, "style_names"), ({"style_names": ["a"], "num_styles": 2},
                                                                "names 1 styles, but the net was trained on 2")):
        (copy / "styles.json").write_text(json.dumps(record))
        assert S.main(["stylize", "--run-dir", str(copy), str(image), "--out", str(tmp_path / "o")]) == 2
        one_line_error(capsys, str(copy / "styles.json"), reason)


def test_config_values_the_code_cannot_use_name_the_file(run, vae_run, tmp_path, capsys):
    copy = copy_run(run, tmp_path)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "conditioning": "bogus"}))
    assert S.main(["stylize", "--run-dir", str(copy), str(photo(tmp_path / "p.png")), "--out", str(tmp_path)]) == 2
    one_line_error(capsys, str(copy / "config.json"), "conditioning is 'bogus'")
    vae = Path(__import__("shutil").copytree(vae_run, tmp_path / "vae"))
    config = json.loads((vae / "config.json").read_text())
    (vae / "config.json").write_text(json.dumps({**config, "latent_dim": -3}))
    assert V.main(["sample", "--run-dir", str(vae), "--out", str(tmp_path / "s.png")]) == 2
    one_line_error(capsys, str(vae / "config.json"), "latent_dim is -3")


def test_a_truncated_latents_file_names_the_file(vae_run, tmp_path, capsys):
    vae = Path(__import__("shutil").copytree(vae_run, tmp_path / "vae"))
    data = (vae / "latents.npz").read_bytes()
    (vae / "latents.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(zipfile.BadZipFile):  # what np.load says, which the sampler must not show as a traceback
        np.load(vae / "latents.npz")
    assert SS.main(["--vae", str(vae), "--out", str(tmp_path / "s"), "--pairs", "1", "--points", "2"]) == 2
    one_line_error(capsys, str(vae / "latents.npz"), "unreadable")


def nan_tiff(path: Path, h=32, w=32) -> Path:
    values = np.full((h, w), 0.5, np.float32)
    values[3, 4] = np.nan
    Image.fromarray(values, mode="F").save(path)
    return path


def test_nan_pixels_are_named_as_such(run, tmp_path, capsys):
    with pytest.raises(iu.ImageError, match="holds 1 NaN or infinite pixels"):
        iu.load_image(nan_tiff(tmp_path / "content.tif"))
    assert S.main(["stylize", "--run-dir", str(run), str(photo(tmp_path / "p.png")), "--strength-map",
                   str(nan_tiff(tmp_path / "map.tif")), "--out", str(tmp_path / "o")]) == 2
    one_line_error(capsys, "map.tif", "NaN")
    assert S.main(["stylize", "--run-dir", str(run), str(tmp_path / "content.tif"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "content.tif: holds 1 NaN" in err and "overflow" not in err


# ---- sample manifests that name files outside their folder ---------------------------------------------------------

@pytest.mark.parametrize("name", ["../../../../../etc/passwd", "/etc/hostname", "link.png", "sub/../../x.png"])
def test_a_manifest_naming_a_file_outside_its_folder_is_refused(tmp_path, name, capsys):
    folder = tmp_path / "samples"
    folder.mkdir()
    photo(folder / "ok.png", 16, 16)
    (folder / "link.png").symlink_to(photo(tmp_path / "elsewhere.png", 16, 16))
    lines = [{"file": "ok.png", "pair": 0, "t": 0.0, "weights": [1.0, 0.0]},
             {"file": name, "pair": 0, "t": 1.0, "weights": [0.0, 1.0]}]
    (folder / "manifest.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    with pytest.raises(sample_folder.ManifestError, match=r"manifest.jsonl:2: names a file outside the sample folder"):
        sample_folder.read_manifest(folder)
    assert S.main(["train", "--recipe", "seed-original", "--samples", str(folder), "--content", str(tmp_path),
                   "--run-dir",
                   str(tmp_path / "run"), "--size", "32", "--steps", "1"]) == 2
    one_line_error(capsys, "manifest.jsonl:2: names a file outside the sample folder")
    import inspect_images

    assert inspect_images.main([str(folder)]) == 2
    one_line_error(capsys, "manifest.jsonl:2")


def test_a_link_inside_the_folder_is_a_sample_like_any_other(tmp_path):
    folder = tmp_path / "samples"
    photo(folder / "real.png", 16, 16)
    (folder / "alias.png").symlink_to("real.png")
    (folder / "manifest.jsonl").write_text(json.dumps({"file": "alias.png", "pair": 0, "t": 0.0,
                                                       "weights": [1.0, 0.0]}) + "\n")
    assert [e["file"] for e in sample_folder.read_manifest(folder)] == ["alias.png"]
