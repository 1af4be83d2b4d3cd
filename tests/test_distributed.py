"""tf.distribute strategies and mixed precision. Logical CPU devices must be set before TensorFlow starts, so the
strategy runs happen in fresh processes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import builtin_images
import stylizer as S
import stylizer_run as R
import vae_keras as V
from conftest import free_ports

ROOT = Path(__file__).resolve().parent.parent


def run_script(script, args, env=None, timeout=300):
    proc = subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def losses(run):
    return [json.loads(l)["loss"] for l in (run / "metrics.jsonl").read_text().splitlines()]


def assert_close_weights(a, b, lr, steps):
    # Adam's first steps move each weight by about lr * sign(gradient); float noise in a near-zero gradient can flip
    # that sign, so single weights may differ by up to 2 * lr per step while the rest agree to float precision.
    diffs = np.concatenate([np.abs(x - y).ravel() for x, y in zip(a, b)])
    assert diffs.max() <= 2 * lr * steps + 1e-6
    assert np.mean(diffs) < 0.02 * lr * steps  # most weights agree far more closely than the worst


@pytest.fixture(scope="module")
def styles(tmp_path_factory):
    d = tmp_path_factory.mktemp("dstyles")
    written = builtin_images.write_defaults(d, 64)
    return [str(p) for p in written["styles"]], d / "content"


def vae_args(run, styles, *extra):
    args = ["train", "--recipe", "seed-original", "--run-dir", str(run), "--size", "64", "--set", "latent_dim=16",
            "--set", "width=8", "--steps", "3",
            "--batch-size", "4", "--seed", "1", "--set", "encode_crops=4", "--log-every", "1"]
    for s in styles:
        args += ["--style", s]
    return args + list(extra)


def test_vae_mirrored_two_logical_cpus_matches_single_device(styles, tmp_path):
    paths, _ = styles
    run_script("vae_keras.py", vae_args(tmp_path / "one", paths, "--strategy", "default"))
    run_script("vae_keras.py", vae_args(tmp_path / "two", paths, "--strategy", "mirrored", "--set", "logical_cpus=2"))
    np.testing.assert_allclose(losses(tmp_path / "one"), losses(tmp_path / "two"), rtol=1e-4)
    a, b = V.load_vae(tmp_path / "one")[0], V.load_vae(tmp_path / "two")[0]
    models = [(a.encoder, b.encoder), (a.decoder, b.decoder)]
    assert_close_weights([w.numpy() for x, _ in models for w in x.trainable_weights],
                         [w.numpy() for _, y in models for w in y.trainable_weights], lr=3e-4, steps=3)
    # The batch norms' statistics are not stepped by Adam: training recalibrates them from the final weights, so
    # they differ as much as those weights' activations do (a few 0.1% here), not within Adam's bound
    for x, y in models:
        for wx, wy in zip(x.non_trainable_weights, y.non_trainable_weights):
            scale = float(np.abs(wx.numpy()).max())
            np.testing.assert_allclose(wx.numpy(), wy.numpy(), rtol=0, atol=0.01 * scale + 1e-6, err_msg=wx.path)


def test_stylizer_mirrored_two_logical_cpus_matches_single_device(styles, tmp_path):
    paths, content = styles
    base = ["train", "--recipe", "seed-original", "--style", paths[0], "--style", paths[1], "--content", str(content),
            "--size", "32",
            "--steps", "3", "--batch-size", "4", "--seed", "1", "--log-every", "1"]
    run_script("stylizer.py", [*base, "--run-dir", str(tmp_path / "one"), "--set", "strategy=default"])
    run_script("stylizer.py", [*base, "--run-dir", str(tmp_path / "two"), "--set", "strategy=mirrored",
                               "--set", "logical_cpus=2"])
    np.testing.assert_allclose(losses(tmp_path / "one"), losses(tmp_path / "two"), rtol=1e-3)
    a, b = R.load_stylizer(tmp_path / "one")[0], R.load_stylizer(tmp_path / "two")[0]
    assert_close_weights(a.get_weights(), b.get_weights(), lr=1e-3, steps=3)


def test_batch_must_divide_across_replicas(styles, tmp_path):
    paths, _ = styles
    proc = subprocess.run([sys.executable, str(ROOT / "vae_keras.py"),
                           *vae_args(tmp_path / "r", paths, "--strategy", "mirrored", "--set", "logical_cpus=3")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "divisible" in proc.stderr
    # The continuum terms split each replica's share in halves: 6 crops on 2 replicas give each an odd 3
    proc = subprocess.run([sys.executable, str(ROOT / "vae_keras.py"),
                           *vae_args(tmp_path / "h", paths, "--strategy", "mirrored", "--set", "logical_cpus=2",
                                     "--batch-size", "6", "--set", "recon=gram", "--set", "path_weight=1")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "multiple of 4 on 2 replica(s)" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "h" / "config.json").exists()  # refused before the run folder is written


@pytest.mark.slow
def test_multiworker_two_processes_identical_weights(styles, tmp_path):
    paths, _ = styles
    ports = free_ports(2)
    run = tmp_path / "mw"
    procs = []
    for i in range(2):
        tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": i}}
        procs.append(subprocess.Popen([sys.executable, str(ROOT / "vae_keras.py"),
                                       *vae_args(run, paths, "--strategy", "multiworker")],
                                      env={**os.environ, "TF_CONFIG": json.dumps(tf_config)},
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
    assert [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    chief = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run / "checkpoints")))
    worker = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run / "workers" / "worker_1")))
    names = [n for n in chief.get_variable_to_shape_map() if n.startswith(("encoder", "decoder"))]
    assert names
    for n in names:
        np.testing.assert_array_equal(chief.get_tensor(n), worker.get_tensor(n))
    assert not (run / "workers" / "worker_1" / "metrics.jsonl").exists()


# mixed_float16 is the slow-suite case: the demo and the README's runs train in mixed_bfloat16.
@pytest.mark.parametrize("precision", ["mixed_bfloat16", pytest.param("mixed_float16", marks=pytest.mark.slow)])
def test_mixed_precision_trains_close_to_float32(styles, tmp_path, precision):
    paths, content = styles
    base = ["train", "--recipe", "seed-original", "--style", paths[0], "--content", str(content), "--size", "32",
            "--steps", "4",
            "--batch-size", "2", "--seed", "3", "--log-every", "1", "--set", "strategy=default"]
    assert S.main([*base, "--run-dir", str(tmp_path / "f32")]) == 0
    assert S.main([*base, "--run-dir", str(tmp_path / "mp"), "--precision", precision]) == 0
    assert tf.keras.mixed_precision.global_policy().name == "float32"  # training leaves no policy behind
    full, mixed = losses(tmp_path / "f32"), losses(tmp_path / "mp")
    assert all(np.isfinite(mixed))
    assert mixed[0] == pytest.approx(full[0], rel=0.05)  # same weights, same data: only rounding differs
    if precision == "mixed_bfloat16":
        np.testing.assert_allclose(mixed, full, rtol=0.25)
    # (mixed_float16's dynamic loss scaling skips its first updates while it finds a safe scale, by design, so its
    # trajectory lags float32 for a few steps; finiteness and the first loss are what hold there.)
    net, _, _ = R.load_stylizer(tmp_path / "mp")  # loads for float32 inference
    assert net.dtype_policy.name == "float32"
