"""The run folder every long job writes: config.json, checkpoints with auto-resume, metrics.jsonl, TensorBoard
scalars, a progress line, numbered snapshots, clean stop on SIGTERM/Ctrl-C and a clear stop on NaN.

Randomness in our jobs is a pure function of (seed, step): data crops use `numpy.random.default_rng([seed, step])`
and noise uses TensorFlow's stateless ops seeded by (seed, step). So the checkpoint needs only model, optimizer and
step to resume exactly: the RNG state and data position are recovered from the step.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time
from pathlib import Path

from image_utilities import atomic_write_json, atomic_write_text

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class RunError(RuntimeError):
    """A run folder that cannot be used as asked (conflicting config, broken checkpoint)."""


def config_from_args(cls, args):
    """Build a config dataclass from an argparse namespace (fields with the same names)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**values)


class Run:
    """One run folder. `resume_safe` names config keys that may change between invocations (e.g. steps)."""

    def __init__(self, path, config, resume_safe=("steps", "log_every", "snapshot_every", "checkpoint_every")):
        self.path = Path(path)
        self.config = config
        self.path.mkdir(parents=True, exist_ok=True)
        self.config_path = self.path / "config.json"
        self.metrics_path = self.path / "metrics.jsonl"
        self.snapshot_dir = self.path / "snapshots"
        self.checkpoint_dir = self.path / "checkpoints"
        new = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
        new = json.loads(json.dumps(new))  # tuples -> lists, as they read back from config.json
        if self.config_path.exists():
            old = json.loads(self.config_path.read_text())
            conflicts = [k for k in new if k not in resume_safe and k in old and old[k] != new[k]]
            if conflicts:
                k = conflicts[0]
                raise RunError(f"{self.config_path}: this run was made with {k}={old[k]!r}, the command asks for "
                               f"{k}={new[k]!r}; use a new --run-dir or the run's own settings")
        atomic_write_json(self.config_path, new)
        self._writer = None
        self._stop_signal = None
        self._last_time = None

    # ---- checkpoints ------------------------------------------------------------------------------------------------
    def checkpoint(self, max_to_keep: int = 3, **trackables):
        """A tf.train.CheckpointManager over the given objects plus a `step` variable. Returns (manager, step)."""
        import tensorflow as tf

        step = tf.Variable(0, dtype=tf.int64, name="step", trainable=False)
        self._ckpt = tf.train.Checkpoint(step=step, **trackables)
        self._manager = tf.train.CheckpointManager(self._ckpt, self.checkpoint_dir, max_to_keep=max_to_keep)
        return self._manager, step

    def restore(self) -> int:
        """Restore the newest checkpoint if there is one; return the step it holds (0 for a new run)."""
        latest = self._manager.latest_checkpoint
        if latest is None:
            self.truncate_metrics(0)
            return 0
        try:
            self._ckpt.restore(latest).assert_existing_objects_matched()
        except (AssertionError, ValueError, OSError) as e:
            raise RunError(f"{latest}: checkpoint does not match this model ({str(e).splitlines()[0]})") from None
        step = int(self._ckpt.step.numpy())
        self.truncate_metrics(step)
        return step

    def save(self, step: int):
        self._ckpt.step.assign(step)
        self._manager.save(checkpoint_number=step)

    # ---- metrics ----------------------------------------------------------------------------------------------------
    def truncate_metrics(self, step: int):
        """Drop metrics past `step` (written after the checkpoint we resume from), so no step is logged twice."""
        if not self.metrics_path.exists():
            return
        kept = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                break  # a torn last line from a killed writer
        atomic_write_text(self.metrics_path, "".join(k + "\n" for k in kept))

    def log(self, step: int, metrics: dict, total_steps: int):
        """Append a metrics line (fsync'd), write TensorBoard scalars and print the progress line."""
        import tensorflow as tf

        record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.path / "tensorboard"))
        with self._writer.as_default():
            for k, v in record.items():
                if k != "step":
                    tf.summary.scalar(k, v, step=step)
        self._writer.flush()
        now = time.perf_counter()
        rate = ""
        if self._last_time is not None:
            dt, dstep = now - self._last_time[0], step - self._last_time[1]
            if dstep > 0:
                per = dt / dstep
                rate = f"  {per:.3f} s/step  eta {_duration(per * (total_steps - step))}"
        self._last_time = (now, step)
        shown = "  ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "step")
        print(f"step {step}/{total_steps}  {shown}{rate}", flush=True)

    def mark_time(self, step: int):
        self._last_time = (time.perf_counter(), step)

    def snapshot_path(self, step: int, prefix: str = "step") -> Path:
        return self.snapshot_dir / f"{prefix}_{step:06d}.png"

    # ---- stopping ---------------------------------------------------------------------------------------------------
    def __enter__(self):
        self._old_handlers = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc):
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        if self._writer is not None:
            self._writer.close()
        return False

    def _on_signal(self, signum, frame):
        self._stop_signal = signal.Signals(signum).name

    @property
    def stop_requested(self) -> str | None:
        return self._stop_signal

    def check_finite(self, step: int, metrics: dict):
        """Raise NonFiniteLoss (the caller stops without saving) when any metric is NaN or infinite."""
        bad = [k for k, v in metrics.items() if not math.isfinite(float(v))]
        if bad:
            last = self._manager.latest_checkpoint
            raise NonFiniteLoss(f"{bad[0]} became {float(metrics[bad[0]])} at step {step}; stopping. "
                                f"The last good checkpoint is kept: {last or 'none yet'}. Try a lower --lr.")


class NonFiniteLoss(RuntimeError):
    pass


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
