"""Faults that must not lose work: non-finite checkpoints, an unreadable newest checkpoint, two writers in
one folder, same-stem outputs, bad manifests, all-bad content, paths under a file, leftover temp files."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import builtin_images
import image_utilities as iu
import inspect_images
import run_dir
import sample_folder
import style_sampler as SS
import stylizer as S
import vae_keras as V
from conftest import gradient_image

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    return d, builtin_images.write_defaults(d, 64)


def train_args(inputs, run, steps, *extra):
    d, written = inputs
    return ["train", "--recipe", "seed-original", *[a for p in written["styles"] for a in ("--style", str(p))],
            "--content", str(d / "content"),
            "--run-dir", str(run), "--size", "32", "--steps", str(steps), "--batch-size", "2", "--log-every", "1",
            "--set", "snapshot_every=100", *extra]


def truncate_newest_data(run: Path) -> Path:
    newest = run_dir.checkpoint_paths(run / "checkpoints")[0]
    data = Path(newest + ".data-00000-of-00001")
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    return Path(newest)


# ---- 1. only finite checkpoints; the learning rate may change on resume ------------------------------------------

def test_a_non_finite_weight_is_never_checkpointed(tmp_path, capsys):
    run = run_dir.Run(tmp_path, {"lr": 1.0})
    v = tf.Variable([1.0, 2.0])
    run.checkpoint(v=v)
    run.save(1)
    v.assign([1.0, np.inf])
    with pytest.raises(run_dir.NonFiniteLoss, match="ckpt-1"):
        run.save(2)
    assert run_dir.checkpoint_paths(tmp_path / "checkpoints") == [str(tmp_path / "checkpoints" / "ckpt-1")]


def test_blown_up_training_keeps_a_finite_checkpoint_and_resumes_with_a_lower_lr(inputs, tmp_path, capsys):
    run = tmp_path / "run"
    assert S.main(train_args(inputs, run, 2, "--checkpoint-every", "1")) == 0
    # The learning rate is not part of the run's identity: a resumed run may raise it (and blow up) ...
    assert S.main(train_args(inputs, run, 6, "--checkpoint-every", "1", "--lr", "1e38")) == 1
    captured = capsys.readouterr()
    assert "lr changed from 0.001 to 1e+38" in captured.out
    kept = run_dir.checkpoint_paths(run / "checkpoints")
    assert Path(kept[0]).name in captured.err  # the message names the last finite checkpoint
    for path in kept:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            value = np.asarray(reader.get_tensor(name))
            assert value.dtype.kind != "f" or np.all(np.isfinite(value)), (path, name)
    # ... and lower it again, the fix the message suggests.
    assert S.main(train_args(inputs, run, 8, "--checkpoint-every", "1", "--lr", "1e-3")) == 0
    assert "lr changed from 1e+38 to 0.001" in capsys.readouterr().out
    assert json.loads((run / "config.json").read_text())["lr"] == 1e-3
    assert S.main(["stylize", "--run-dir", str(run), str(inputs[1]["content"][0]), "--out", str(tmp_path / "o")]) == 0
    assert np.isfinite(iu.load_image(tmp_path / "o" / f"{inputs[1]['content'][0].stem}.png")).all()
    assert S.main(train_args(inputs, run, 8, "--style-weight", "3")) == 2  # identity settings still refuse


# ---- 2. restore passes over an unreadable or non-finite newest checkpoint ------------------------------------

def test_restore_falls_back_past_truncated_and_non_finite_checkpoints(tmp_path, capsys):
    run = run_dir.Run(tmp_path, {})
    v = tf.Variable([1.0, 2.0])
    run.checkpoint(v=v)
    run.save(1)
    v.assign([np.nan,
              np.nan])  # ckpt-2 as code that checkpointed non-finite weights saved it: whatever the weights were
    run._ckpt.step.assign(2)
    run._manager.save(checkpoint_number=2)
    v.assign([3.0, 0.0])
    run.save(3)
    truncate_newest_data(tmp_path)  # ckpt-3
    again = run_dir.Run(tmp_path, {})
    w = tf.Variable([0.0, 0.0])
    again.checkpoint(v=w)
    assert again.restore() == 1 and w.numpy().tolist() == [1.0, 2.0]
    err = capsys.readouterr().err
    assert "ckpt-3: not usable" in err and "ckpt-2: not usable (holds NaN or infinite weights)" in err


def test_stylize_and_resume_use_the_newest_readable_checkpoint(inputs, tmp_path, capsys):
    run = tmp_path / "run"
    assert S.main(train_args(inputs, run, 4, "--checkpoint-every", "2")) == 0
    photo = inputs[1]["content"][0]
    assert S.main(["stylize", "--run-dir", str(run), str(photo), "--out", str(tmp_path / "before")]) == 0
    broken = truncate_newest_data(run)  # ckpt-4
    assert S.main(["stylize", "--run-dir", str(run), str(photo), "--out", str(tmp_path / "after")]) == 0
    err = capsys.readouterr().err
    assert f"{broken}: not usable" in err and "ckpt-2" in err
    before, after = (iu.load_image(tmp_path / d / f"{photo.stem}.png") for d in ("before", "after"))
    assert np.abs(before - after).mean() > 1e-6  # the older weights, not the broken newest ones
    assert S.main(train_args(inputs, run, 5, "--checkpoint-every", "2")) == 0  # resumes from step 2
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]
    for d in run_dir.checkpoint_paths(run / "checkpoints"):
        shutil.rmtree(d, ignore_errors=True)
        for f in Path(d).parent.glob(Path(d).name + ".*"):
            f.write_bytes(b"")  # every checkpoint unreadable
    assert S.main(["stylize", "--run-dir", str(run), str(photo), "--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "cannot restore" in err[-1]


# ---- 3. one writer per run folder --------------------------------------------------------------------------------

def hold_lock(folder: Path, name: str = ".lock") -> subprocess.Popen:
    code = (f"import sys, time; sys.path.insert(0, {str(ROOT)!r}); import run_dir; "
            f"run_dir.FolderLock({str(folder)!r}, {name!r}); print('held', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_and_a_stale_lock_taken_over(inputs, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    holder = hold_lock(run)
    try:
        assert S.main(train_args(inputs, run, 2)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"PID {holder.pid}" in err[0] and "in use by" in err[0]
        assert not (run / "config.json").exists() and not (run / "metrics.jsonl").exists()
    finally:
        holder.kill()  # like kill -9: the lock file stays behind, but nobody holds it
        holder.wait()
    assert (run / ".lock").exists()
    assert S.main(train_args(inputs, run, 2)) == 0
    assert f"stale lock of PID {holder.pid}" in capsys.readouterr().out


def test_vae_and_sampler_take_the_lock(style_files, tmp_path, capsys):
    vae = tmp_path / "vae"
    vae.mkdir()
    holder = hold_lock(vae)
    try:
        args = ["train", "--recipe", "seed-original", "--run-dir", str(vae), "--size", "32", "--set", "latent_dim=4",
                "--set", "width=4", "--steps", "2",
                "--batch-size", "2", "--set", "encode_crops=2", *[a for s in style_files for a in ("--style", s)]]
        assert V.main(args) == 2 and "in use by" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert V.main(args) == 0
    out = tmp_path / "samples"
    out.mkdir()
    holder = hold_lock(out, ".lock-shard-0-of-1")
    try:
        assert SS.main(["--vae", str(vae), "--out", str(out), "--pairs", "1", "--points", "2"]) == 2
        assert "in use by" in capsys.readouterr().err
        # Another shard of the same folder is not held back: shards share the folder by design.
        assert SS.main(["--vae", str(vae), "--out", str(out), "--pairs", "2", "--points", "2", "--batch-size",
                        "2", "--shard", "1/2"]) == 0
    finally:
        holder.kill()
        holder.wait()


# ---- 4. stylize never silently overwrites ------------------------------------------------------------------------

def test_same_stem_inputs_get_distinct_outputs_and_existing_ones_are_kept(inputs, tmp_path, capsys):
    run = tmp_path / "run"
    assert S.main(train_args(inputs, run, 1)) == 0
    photos = tmp_path / "photos"
    iu.save_image(photos / "a.jpg", gradient_image(40, 48, seed=1))
    iu.save_image(photos / "a.png", gradient_image(40, 48, seed=2)[::-1])
    out = tmp_path / "out"
    assert S.main(["stylize", "--run-dir", str(run), str(photos), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_jpg.png", "a_png.png"]
    a, b = (iu.load_image(out / n) for n in ("a_jpg.png", "a_png.png"))
    assert np.abs(a - b).mean() > 0.01
    stamp = (out / "a_jpg.png").stat().st_mtime_ns
    capsys.readouterr()
    assert S.main(["stylize", "--run-dir", str(run), str(photos), "--out", str(out), "--strength", "0"]) == 0
    assert "skipped 2 inputs whose output exists" in capsys.readouterr().out
    assert (out / "a_jpg.png").stat().st_mtime_ns == stamp
    assert S.main(["stylize", "--run-dir", str(run), str(photos), "--out", str(out), "--strength", "0",
                   "--overwrite"]) == 0
    assert np.abs(iu.load_image(out / "a_jpg.png") - a).mean() > 1e-4


# ---- 5. manifests are validated where they are read --------------------------------------------------------------

def fake_sample_folder(folder: Path, weights: list[list[float]]) -> Path:
    folder.mkdir(parents=True)
    lines = []
    for i, w in enumerate(weights):
        iu.save_image(folder / f"s{i}.png", gradient_image(32, 32, seed=i))
        lines.append(json.dumps({"file": f"s{i}.png", "pair": i, "t": 0.0, "weights": w}))
    (folder / sample_folder.MANIFEST).write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize("bad,message", [([0.7, 0.7], "weights sum to 1.4, not 1"),
                                         ([0.2, 0.3, 0.5], "3 weights, but the folder has 2 styles"),
                                         ([1.5, -0.5], "weights must be non-negative"),
                                         ([float("nan"), 1.0], "weights must be finite")])
def test_bad_manifest_lines_are_refused_naming_file_and_line(inputs, tmp_path, capsys, bad, message):
    folder = fake_sample_folder(tmp_path / "samples", [[1.0, 0.0], bad, [0.0, 1.0]])
    d, _ = inputs
    assert S.main(["train", "--recipe", "seed-original", "--samples", str(folder), "--content", str(d / "content"),
                   "--run-dir",
                   str(tmp_path / "run"), "--size", "32", "--steps", "1", "--batch-size", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {folder / sample_folder.MANIFEST}:2: {message}")
    assert inspect_images.main([str(folder), "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{sample_folder.MANIFEST}:2: {message}" in err[0]


def test_a_torn_last_manifest_line_is_still_ignored(tmp_path):
    folder = fake_sample_folder(tmp_path / "samples", [[1.0, 0.0], [0.0, 1.0]])
    with open(folder / sample_folder.MANIFEST, "a") as f:
        f.write('{"file": "s2.png", "wei')  # a writer killed mid-line
    assert [e["file"] for e in sample_folder.read_manifest(folder)] == ["s0.png", "s1.png"]


# ---- 6. one-line errors, and temp files left by kills -------------------------------------------------------------

def test_all_unreadable_content_and_paths_under_a_file_are_one_line_errors(inputs, tmp_path, capsys):
    bad = tmp_path / "bad_content"
    bad.mkdir()
    for i in range(3):
        (bad / f"x{i}.jpg").write_bytes(b"not a jpeg")
    d, written = inputs
    args = train_args(inputs, tmp_path / "run", 2)
    args[args.index("--content") + 1] = str(bad)
    assert S.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{bad}: none of its 3 content photos can be read" in err[0]
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert S.main(train_args(inputs, blocker / "run", 1)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{blocker} is a file" in err[0]
    run = tmp_path / "ok"
    assert S.main(train_args(inputs, run, 1)) == 0
    assert S.main(["stylize", "--run-dir", str(run), str(written["content"][0]), "--out",
                   str(blocker / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{blocker} is a file" in err[0]


def test_temp_files_of_killed_writers_are_reported_and_removed(style_files, tmp_path, capsys):
    vae = tmp_path / "vae"
    args = ["train", "--recipe", "seed-original", "--run-dir", str(vae), "--size", "32", "--set", "latent_dim=4",
            "--set", "width=4", "--steps", "2",
            "--batch-size", "2", "--set", "encode_crops=2", *[a for s in style_files for a in ("--style", s)]]
    assert V.main(args) == 0
    old = time.time() - 3600
    leftovers = [vae / "checkpoints" / "ckpt-3_temp", vae / ".metrics.jsonl.k3j2.tmp"]
    leftovers[0].mkdir()
    (leftovers[0] / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"x")
    leftovers[1].write_text("x")
    for p in leftovers:
        os.utime(p, (old, old))
    args[args.index("--steps") + 1] = "3"
    assert V.main(args) == 0
    assert "removed 2 temp files" in capsys.readouterr().out
    assert not any(p.exists() for p in leftovers)

    out = tmp_path / "samples"
    assert SS.main(["--vae", str(vae), "--out", str(out), "--pairs", "1", "--points", "2"]) == 0
    tmp = out / ".pair_00000_t1.000.png.x81.tmp"
    tmp.write_bytes(b"partial")
    os.utime(tmp, (old, old))
    assert SS.main(["--out", str(out), "--verify"]) == 1
    assert tmp.name in capsys.readouterr().err
    assert SS.main(["--vae", str(vae), "--out", str(out), "--pairs", "1", "--points", "2"]) == 0
    assert not tmp.exists()
    assert SS.main(["--out", str(out), "--verify"]) == 0


def test_a_non_finite_output_is_an_error_not_a_black_picture(tmp_path, capsys):
    import stylizer_apply as A
    import stylizer_net as N

    net = N.build_stylizer(2, "channels")
    weights = net.get_weights()
    weights[0] = np.full_like(weights[0], np.inf)
    net.set_weights(weights)
    iu.save_image(tmp_path / "in" / "p.png", gradient_image(32, 32))
    written, failed, skipped = A.stylize_files(net, ["a", "b"], [tmp_path / "in"], tmp_path / "out", [0.5, 0.5])
    assert (written, failed, skipped) == (0, 1, [])
    assert "p.png: the network's output is not finite" in capsys.readouterr().err
    assert not (tmp_path / "out" / "p.png").exists()
