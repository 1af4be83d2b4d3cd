"""The run folder machinery shared by the VAE and the stylizer (run_dir.py)."""
import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

import builtin_images
import distribute
import run_config
import run_dir
import vae_keras as V
from conftest import snapshot_image_steps


def test_vae_snapshots_reach_tensorboard(tmp_path):
    styles = builtin_images.write_defaults(tmp_path / "res", 64)["styles"]
    run = tmp_path / "vae"
    assert V.main(["train", "--recipe", "seed-original", "--run-dir", str(run), "--size", "64", "--set",
                   "latent_dim=8", "--set", "width=4", "--steps",
                   "4", "--batch-size", "2", "--set", "encode_crops=2", "--snapshot-every", "2",
                   *[a for p in styles for a in ("--style", str(p))]]) == 0
    assert snapshot_image_steps(run) == [2, 4]  # what `tensorboard --logdir RUN` lists under Images


def test_distributed_step_sums_the_replicas_shares():
    strategy = distribute.make_strategy("default")

    def replica_step(x, scale):
        return {"sum": tf.reduce_sum(x) * scale, "count": tf.cast(tf.size(x), tf.float32)}

    step = distribute.distributed_step(strategy, replica_step)
    x = np.arange(6, dtype=np.float32)
    out = step(*distribute.per_replica(strategy, 6, x), tf.constant(2.0))
    assert {k: float(v) for k, v in out.items()} == {"sum": 30.0, "count": 6.0}


@dataclasses.dataclass(frozen=True)
class NewConfig(run_config.RunControl):
    samples: str = ""
    size: int = 8

    RENAMED_KEYS = {"styles": "samples"}


def test_configs_saved_under_old_key_names_load_and_resume(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"styles": "runs/samples", "size": 16, "steps": 3}))
    config = run_config.read_config(tmp_path, NewConfig, "test")
    assert config.samples == "runs/samples" and config.size == 16
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "ckpt-3.index").write_bytes(b"")  # it has trained: its settings are its identity
    with pytest.raises(run_config.RunError, match="samples='runs/samples'"):
        run_dir.Run(tmp_path, NewConfig(samples="elsewhere", size=16))  # still compared under the new name
    run_dir.Run(tmp_path, config)  # the same settings: resumes, and config.json now uses the new name
    assert json.loads((tmp_path / "config.json").read_text())["samples"] == "runs/samples"
