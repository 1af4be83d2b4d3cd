"""Where the time goes: traces the three workloads of the speed work with the TensorFlow profiler and splits the time of
the TensorFlow ops by part of the computation, read from the op names the trace records.

    python benchmarks/profile_steps.py [--steps 5] [--trace-dir runs/bench/profile] [--json OUT]

Workloads: the stylizer forward at 512x512 (float32), the stylizer training step (batch 4 at 256, float32) and the
VAE step of `make demo` (mixed_bfloat16, as the demo trains it). Parts: the transformation network's convolutions,
its instance norms, reflection padding and upsampling; VGG16 (forward and the gradients through it); Gram
matrices; the VAE's encoder and decoder; the optimizer update; the rest. Percentages are shares of the summed op
time of all threads; "wall" is the step's own time, "data" the time to make one batch outside the step (the VAE's
random crops and noise). The traces stay in --trace-dir for TensorBoard's profile tab (tensorboard-plugin-profile).
"""
from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import image_utilities as iu  # noqa: E402

PARTS = ("net convolutions", "instance norm", "reflection padding", "upsampling", "net other", "VGG16",
         "Gram matrices", "VAE encoder", "VAE decoder", "optimizer", "other")


def part_of(op: str) -> str:
    """The part of the computation a traced op belongs to, from its full name ('scope/.../name:Type')."""
    name, _, kind = op.rpartition(":")
    scopes = name.replace("gradient_tape/", "").split("/")
    top = scopes[0]
    if "vgg" in top:
        return "VGG16"
    if top.startswith("encoder"):
        return "VAE encoder"
    if top.startswith("decoder"):
        return "VAE decoder"
    if top.startswith("stylizer"):
        inner = "/".join(scopes[1:])
        if "MirrorPad" in kind or "reflection_pad" in inner or "pad_to_multiple" in inner:
            return "reflection padding"
        if "Conv2D" in kind:
            return "net convolutions"
        if re.match(r"in\d+(_\d+)?$", scopes[1] if len(scopes) > 1 else ""):  # the norms are named in0, in1, ...
            return "instance norm"
        if "upsample" in inner or "Resize" in kind:
            return "upsampling"
        return "net other"
    if "MatMul" in kind:
        return "Gram matrices"
    if top.startswith(("adam", "Adam")) or "ResourceApply" in kind or kind.startswith("Assign"):
        return "optimizer"
    return "other"


def op_times(trace_dir: Path) -> collections.Counter:
    """Summed time (ms) per op, "layer:Type", over the TensorFlow executor threads of the newest trace under
    trace_dir (the layer: the op's scope below its model, or its own top scope)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = sorted(trace_dir.glob("plugins/profile/*/*.xplane.pb"))[-1]
    space = xplane_pb2.XSpace()
    space.ParseFromString(path.read_bytes())
    out = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                op = plane.event_metadata[event.metadata_id].name
                if ":" in op.replace("::", ""):  # ops are "name:Type"; executor events ("Executor::...") enclose them
                    out[op] += event.duration_ps / 1e9
    return out


def layer_of(op: str) -> str:
    name, _, kind = op.rpartition(":")
    scopes = name.replace("gradient_tape/", "").split("/")
    return f"{'/'.join(scopes[:2])}:{kind}"


def profile(name: str, run, steps: int, trace_dir: Path, data=None, top: int = 5) -> dict:
    import tensorflow as tf

    for _ in range(2):
        run()
    walls = []
    tf.profiler.experimental.start(str(trace_dir / name))
    for _ in range(steps):
        t0 = time.perf_counter()
        run()
        walls.append(time.perf_counter() - t0)
    tf.profiler.experimental.stop()
    ops = op_times(trace_dir / name)
    parts, layers = collections.Counter(), collections.Counter()
    for op, ms in ops.items():
        parts[part_of(op)] += ms
        layers[layer_of(op)] += ms / steps
    total = sum(parts.values())
    row = {"wall_ms": 1000 * float(np.median(walls)), "op_ms_per_step": total / steps,
           "shares": {p: parts[p] / total for p in PARTS if parts[p]},
           "top_ops_ms": dict(layers.most_common(top))}
    if data is not None:
        t0 = time.perf_counter()
        for _ in range(steps):
            data()
        row["data_ms"] = 1000 * (time.perf_counter() - t0) / steps
    return row


def workloads():
    """(name, run, data) of the three workloads, each run doing one compiled step on a fixed batch."""
    import speed
    import vae_keras as V
    from distribute import make_strategy, per_replica

    yield "stylizer forward 512, float32", speed.forward_runner(512), None

    step = speed.train_step_runner("channels", 2, 4, 256)
    yield "stylizer train step, batch 4 at 256, float32", step, None

    from vae_cost import build, builtin_config
    config, styles = builtin_config(**speed.DEMO_VAE, precision="mixed_bfloat16")
    run = build(config, styles)
    strategy = make_strategy("default")

    def data():
        rng = V.batch_rng(config.seed, 7)
        images, labels = V.crop_batch(styles, config, rng, config.batch_size)
        eps, noise = V.step_noise(config, 7)
        per_replica(strategy, config.batch_size, images, labels, eps, noise)
    yield "VAE step of make demo, mixed_bfloat16", lambda: run(7), data


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=iu.HelpFormatter)
    ap.add_argument("--steps", type=int, default=5, help="traced steps of each workload")
    ap.add_argument("--trace-dir", type=Path, default=ROOT / "runs" / "bench" / "profile",
                    help="where the traces are written")
    ap.add_argument("--json", type=Path, help="also write the table here")
    ap.add_argument("--top", type=int, default=5, help="list this many of each workload's most expensive ops")
    args = ap.parse_args(argv)
    table = {}
    for i, (name, run, data) in enumerate(workloads()):
        row = table[name] = profile(f"workload_{i}", run, args.steps, args.trace_dir, data, args.top)
        shares = ", ".join(f"{p} {v:.0%}" for p, v in sorted(row["shares"].items(), key=lambda kv: -kv[1]))
        extra = f", data {row['data_ms']:.1f} ms outside the step" if "data_ms" in row else ""
        print(f"{name}: wall {row['wall_ms']:.0f} ms, op time {row['op_ms_per_step']:.0f} ms (all threads){extra}\n"
              f"  {shares}\n  most expensive ops (ms a step, all threads): "
              + ", ".join(f"{op} {ms:.0f}" for op, ms in row["top_ops_ms"].items()), flush=True)
    if args.json:
        iu.atomic_write_json(args.json, table)
    print(json.dumps({name: {p: round(v, 3) for p, v in row["shares"].items()} for name, row in table.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
