"""The run folder every long job writes, and the training loop the jobs share: config.json (a resumed run with other
settings is refused), checkpoints with auto-resume, metrics.jsonl, TensorBoard scalars and snapshot images, a
progress line, numbered snapshots, a clean stop on SIGTERM/Ctrl-C and a clear stop on NaN (Run, Run.train_loop);
one writer per folder (FolderLock). The config itself: run_config.py; where the step runs: distribute.py.

Randomness in our jobs is a pure function of (seed, step): data crops use `numpy.random.default_rng([seed, step])`
and noise uses TensorFlow's stateless ops seeded by (seed, step). So the checkpoint needs only model, optimizer and
step to resume exactly: the RNG state and data position are recovered from the step.
"""
from __future__ import annotations

import atexit
import dataclasses
import fcntl
import json
import math
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

from image_utilities import atomic_write_json, atomic_write_text, load_image, make_dirs, remove_stale_temps, to_uint8
from run_config import (OPTIMIZER_KEYS, RESUMABLE_KEYS, RunError, config_problem, current_keys, field_defaults,
                        missing_keys, removed_problem)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def restore_latest(run_dir, **trackables) -> str:
    """Restore the newest usable checkpoint of a run folder into `trackables` (inference: optimizer state is
    ignored); see restore_newest_usable. Returns its path."""
    import tensorflow as tf

    run_dir = Path(run_dir)
    path = restore_newest_usable(run_dir / "checkpoints", tf.train.Checkpoint(**trackables), trackables,
                                 partial=True, config=run_dir / "config.json")
    if path is None:
        raise RunError(f"{run_dir}: no checkpoint in {run_dir / 'checkpoints'}; train it first")
    return path


# --------------------------------------------------------------------------------------------------------------------
# Checkpoints that survive faults: only finite weights are saved, and a restore passes over unusable ones

def checkpoint_paths(folder) -> list[str]:
    """The checkpoints in `folder` (prefixes such as .../ckpt-300), newest first: those TensorFlow's `checkpoint`
    index lists and every other ckpt-N.index on disk (the index file itself may be what is damaged)."""
    import tensorflow as tf

    folder = Path(folder)
    found = {str(p.with_suffix("")) for p in folder.glob("ckpt-*.index")}
    try:
        state = tf.train.get_checkpoint_state(str(folder))
        if state is not None:
            # Our managers keep checkpoints in the folder itself; the index may name them absolute or relative.
            found.update(str(folder / Path(p).name)
                         for p in [*state.all_model_checkpoint_paths, state.model_checkpoint_path] if p)
    except (tf.errors.OpError, ValueError, UnicodeDecodeError):
        pass  # an unreadable `checkpoint` index: the files on disk still say what there is

    def number(prefix: str) -> int:
        m = re.search(r"-(\d+)$", prefix)
        return int(m.group(1)) if m else -1

    return sorted(found, key=number, reverse=True)


def trackable_variables(trackables: dict) -> list:
    """The floating-point variables of checkpointed objects (models, optimizers, plain variables)."""
    import tensorflow as tf

    out = []
    for obj in trackables.values():
        out.extend([obj] if isinstance(obj, tf.Variable) else list(getattr(obj, "variables", [])))
    return [v for v in out if tf.as_dtype(v.dtype).is_floating]


def all_finite(variables) -> bool:
    import tensorflow as tf

    return all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in variables)


def restore_newest_usable(folder, checkpoint, trackables: dict, partial: bool = False, config=None) -> str | None:
    """Restore into `checkpoint` the newest checkpoint in `folder` that reads completely, matches the objects and
    holds only finite values; warn on stderr naming each newer one passed over (truncated or missing data, a
    DataLossError, NaN or infinite weights). Returns its path, None when the folder has no checkpoint at all, and
    raises a one-line RunError when none is usable."""
    import tensorflow as tf

    failures = []
    for path in checkpoint_paths(folder):
        try:
            status = checkpoint.restore(path)
            (status.expect_partial() if partial else status).assert_existing_objects_matched()
            reason = None if all_finite(trackable_variables(trackables)) else "holds NaN or infinite weights"
        except (AssertionError, ValueError, IndexError, OSError, tf.errors.OpError) as e:
            reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        if reason is None:
            for bad, why in failures:
                print(f"warning: {bad}: not usable ({why}); restored the older {path}", file=sys.stderr, flush=True)
            return path
        failures.append((path, reason))
    if not failures:
        return None
    path, why = failures[0]
    against = f" with {config}" if config else ""
    older = f" (nor any of the {len(failures) - 1} older ones)" if len(failures) > 1 else ""
    raise RunError(f"{path}: cannot restore{against}: {why}{older}")


# --------------------------------------------------------------------------------------------------------------------
# One writer per folder

class FolderLock:
    """One writer per folder: `FOLDER/NAME` holds the writer's PID, host, start time and command, under an exclusive
    flock that the kernel drops when the process ends, however it ends. A lock file nobody holds was left by a killed
    job (a stale lock) and is taken over with a note; a held one is refused with a RunError naming its holder.
    Within one process a folder's lock is re-entrant (a test or a notebook calling main() twice)."""

    _held: dict = {}

    def __init__(self, folder, name: str = ".lock"):
        self.path = Path(folder) / name
        key = str(self.path.resolve())
        if key in FolderLock._held:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = describe_holder(os.read(fd, 4096))
            os.close(fd)
            raise RunError(f"{Path(folder)}: in use by {holder} (lock {self.path}); wait for that job to end or use "
                           "another folder") from None
        previous = os.read(fd, 4096)
        if previous.strip():
            print(f"note: {self.path}: taking over a stale lock of {describe_holder(previous)}, which is gone",
                  flush=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
              "command": " ".join(sys.argv)[:300]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd, self._key = fd, key
        FolderLock._held[key] = self
        atexit.register(self.release)

    def release(self):
        """Remove the lock file and drop the lock (also run at exit)."""
        if FolderLock._held.get(getattr(self, "_key", None)) is not self:
            return
        del FolderLock._held[self._key]
        self.path.unlink(missing_ok=True)
        os.close(self._fd)


def describe_holder(raw: bytes) -> str:
    try:
        h = json.loads(raw)
        return f"PID {h['pid']} on {h['host']} since {h['since']} ({h['command']})"
    except (ValueError, KeyError, TypeError):
        return "another process"


# --------------------------------------------------------------------------------------------------------------------
# Distribution: TensorFlow's own engine (tf.distribute)


class Run:
    """One run folder. `resume_safe` names config keys that may change between invocations (e.g. steps). Only the
    chief writes config, metrics, TensorBoard and snapshots; other workers of a multi-worker run save their
    checkpoints under `workers/worker_N/` (every worker must take part in a save) and resume from the chief's."""

    def __init__(self, path, config, resume_safe=RESUMABLE_KEYS, chief: bool = True, task: int = 0):
        self.path = Path(path)
        self.config = config
        self.chief, self.task = chief, task
        problem = config_problem(config)
        if problem:
            raise RunError(f"{self.path}: cannot train with {problem}")
        make_dirs(self.path)
        if chief:  # the chief writes the shared files; every other worker only its own workers/worker_N/
            FolderLock(self.path)
            removed = remove_stale_temps(self.path, time.time())  # ours now: any temp file is a killed writer's
            if removed:
                print(f"removed {len(removed)} temp files left by a killed run: "
                      f"{', '.join(str(p.relative_to(self.path)) for p in removed[:5])}", flush=True)
        self.config_path = self.path / "config.json"
        self.metrics_path = self.path / "metrics.jsonl"
        self.snapshot_dir = self.path / "snapshots"
        self.checkpoint_dir = self.path / "checkpoints"
        self.save_dir = self.checkpoint_dir if chief else self.path / "workers" / f"worker_{task}"
        new = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
        new = json.loads(json.dumps(new))  # tuples -> lists, as they read back from config.json
        # A folder without a checkpoint has trained nothing yet: its config.json (a start that failed on its inputs,
        # say a mistyped --content) is replaced. Once a checkpoint exists, the run's settings are its identity.
        if self.config_path.exists() and any(self.checkpoint_dir.glob("ckpt-*.index")):
            # A key the folder's config lacks was added since: the run was made with its default (as read_config
            # loads it), so asking for another value is a conflict too.
            saved = current_keys(type(config), json.loads(self.config_path.read_text()))
            problem = removed_problem(type(config), saved)
            if problem:
                raise RunError(f"{self.config_path}: {problem}")
            old = {**field_defaults(config), **json.loads(json.dumps(missing_keys(type(config), saved))), **saved}
            conflicts = [k for k in new if k not in resume_safe and k in old and old[k] != new[k]]
            if conflicts:
                k = conflicts[0]
                raise RunError(f"{self.config_path}: this run was made with {k}={old[k]!r}, the command asks for "
                               f"{k}={new[k]!r}; use a new --run-dir or the run's own settings")
            for k in OPTIMIZER_KEYS:
                if k in old and k in new and old[k] != new[k]:
                    print(f"{k} changed from {old[k]!r} to {new[k]!r} on resume", flush=True)
        if chief:
            atomic_write_json(self.config_path, new)
        self._writer = None
        self._stop_signal = None
        self._last_time = None

    # ---- checkpoints ------------------------------------------------------------------------------------------------
    def checkpoint(self, max_to_keep: int = 3, own=(), **trackables):
        """A tf.train.CheckpointManager over the given objects plus a `step` variable. Returns (manager, step).
        `own` names trackables that differ between the workers of a multi-worker run (a worker's place in its own
        share of the data): every worker saves them in its own folder and restores them from there."""
        import tensorflow as tf

        step = tf.Variable(0, dtype=tf.int64, name="step", trainable=False)
        self._trackables, self._own = trackables, tuple(own)
        self._ckpt = tf.train.Checkpoint(step=step, **trackables)
        self._manager = tf.train.CheckpointManager(self._ckpt, self.save_dir, max_to_keep=max_to_keep)
        return self._manager, step

    def restore(self) -> int:
        """Restore the newest usable checkpoint if there is one (restore_newest_usable: unreadable or non-finite
        ones are passed over with a warning) and return the step it holds (0 for a new run). The optimizer gets this
        command's learning rate (OPTIMIZER_KEYS may change on resume)."""
        latest = restore_newest_usable(self.checkpoint_dir, self._ckpt, self._trackables,  # workers: the chief's
                                       config=self.config_path)
        if latest is None:
            self.truncate_metrics(0)
            return 0
        optimizer = self._trackables.get("optimizer")
        lr = getattr(self.config, "lr", None) if dataclasses.is_dataclass(self.config) else self.config.get("lr")
        if optimizer is not None and lr is not None:
            optimizer.learning_rate = lr
        step = int(self._ckpt.step.numpy())
        if self._own and self.save_dir != self.checkpoint_dir:
            self.restore_own(step)
        self.truncate_metrics(step)
        return step

    def restore_own(self, step: int):
        """A worker's own trackables (`own`) from its own checkpoint of `step`: the chief's hold the chief's."""
        import tensorflow as tf

        path = self.save_dir / f"ckpt-{step}"
        if not Path(f"{path}.index").exists():
            raise RunError(f"{self.save_dir}: no checkpoint of step {step}, which the chief restored; this worker's "
                           "place in its share of the data is lost (start the run again in a new folder)")
        tf.train.Checkpoint(**{k: self._trackables[k] for k in self._own}).restore(str(path)).expect_partial()

    def save(self, step: int):
        """Checkpoint `step`, unless a weight is NaN or infinite: then NonFiniteLoss, and the newest checkpoint on
        disk stays the last finite one."""
        if not all_finite(trackable_variables(self._trackables)):
            raise NonFiniteLoss(f"weights became NaN or infinite by step {step}; not saved. The last finite "
                                f"checkpoint is kept: {self._manager.latest_checkpoint or 'none yet'}. Resume with "
                                "a lower --lr.")
        self._ckpt.step.assign(step)
        self._manager.save(checkpoint_number=step)

    # ---- metrics ----------------------------------------------------------------------------------------------------
    def truncate_metrics(self, step: int):
        """Drop metrics past `step` (written after the checkpoint we resume from), so no step is logged twice."""
        if not self.chief or not self.metrics_path.exists():
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

        if not self.chief:
            return
        record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        with self.tensorboard().as_default():
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

    def tensorboard(self):
        """The run's TensorBoard writer (RUN/tensorboard), opened on first use."""
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.path / "tensorboard"))
        return self._writer

    def mark_time(self, step: int):
        self._last_time = (time.perf_counter(), step)

    def snapshot_path(self, step: int, prefix: str = "step") -> Path:
        return self.snapshot_dir / f"{prefix}_{step:06d}.png"

    def log_snapshot(self, step: int):
        """Put the picture the job wrote to snapshot_path(step) into TensorBoard as the image `snapshot`, next to the
        scalars: `tensorboard --logdir RUN` then shows how the pictures evolve, for every job whose snapshot
        function writes there (read back from disk, so the jobs need no TensorBoard code of their own)."""
        import tensorflow as tf

        path = self.snapshot_path(step)
        if not self.chief or not path.exists():
            return
        with self.tensorboard().as_default():
            tf.summary.image("snapshot", to_uint8(load_image(path))[None], step=step)
        self._writer.flush()

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

    def train_loop(self, start: int, steps: int, control: RunControl, step_fn, snapshot_fn) -> str:
        """Run `step_fn(step) -> metrics` from `start` to `steps`, logging, snapshotting (chief only:
        `snapshot_fn(step)` writes snapshot_path(step), which also goes to TensorBoard) and checkpointing at the
        configured intervals and at the last step. Returns "done", "stopped" (a signal: saved and out) or "nan" (a
        non-finite metric: stopped without saving over the last good checkpoint)."""
        step = start
        with self:
            self.mark_time(step)
            while step < steps:
                metrics = {k: float(v) for k, v in step_fn(step).items()}
                step += 1
                try:
                    self.check_finite(step, metrics)
                    last = step == steps
                    if step % control.log_every == 0 or last:
                        self.log(step, metrics, steps)
                    if self.chief and (step % control.snapshot_every == 0 or last):
                        snapshot_fn(step)
                        self.log_snapshot(step)
                    if step % control.checkpoint_every == 0 or last or self.stop_requested:
                        self.save(step)
                except NonFiniteLoss as e:
                    print(f"error: {e}", file=sys.stderr, flush=True)
                    return "nan"
                if self.stop_requested:
                    print(f"{self.stop_requested}: saved step {step} to {self.save_dir}; run the same command to "
                          "resume", flush=True)
                    return "stopped"
        return "done"

    def check_finite(self, step: int, metrics: dict):
        """Raise NonFiniteLoss (the caller stops without saving) when any metric is NaN or infinite."""
        bad = [k for k, v in metrics.items() if not math.isfinite(float(v))]
        if bad:
            last = self._manager.latest_checkpoint
            raise NonFiniteLoss(f"{bad[0]} became {float(metrics[bad[0]])} at step {step}; stopping. "
                                f"The last finite checkpoint is kept: {last or 'none yet'}. Resume with a lower "
                                "--lr.")


class NonFiniteLoss(RuntimeError):
    pass


# A training script's exit code per train_loop status: a signal-stopped run is saved but not finished, so a shell
# pipeline (make demo, the experiment) must not carry on as if it were.
EXIT_CODES = {"done": 0, "nan": 1, "stopped": 130}


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
