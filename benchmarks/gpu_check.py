"""Does the GPU path work? One short run on a machine with a GPU that checks, and times, what only a GPU exercises:

1. the first training step's losses on the GPU against the same step on the CPU (same weights, same batch), in
   float32 (within 1e-3, relative) and mixed_float16 with loss scaling (within 3e-2);
2. the stylizer trained for --steps steps at 256 px, batch 8, in float32 and mixed_float16, fed by the real content
   pipeline (a COCO-like folder: benchmarks/input_pipeline.py): photos/s, and the share of the time the step waited
   for its batch;
3. --vae-steps steps of make demo's VAE (the recommended route, the CPU demo's budgets) in mixed_bfloat16;
4. `stylize` of a 1024 px photo whole, and of a 4096 px one in 1024 px tiles: seconds and the GPU's peak memory.

    python benchmarks/gpu_check.py [--steps 50] [--vae-steps 20] [--folder runs/coco_like] [--out report.json]

Without a GPU it says so and exits 0 (`--cpu` runs the same checks on the CPU, for trying the script itself). The
last line is JSON: the device, each check's numbers, and `passed` (the loss checks and a finite VAE loss).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import image_utilities as iu  # noqa: E402

TOLERANCE = {"float32": 1e-3, "mixed_float16": 3e-2}


def first_losses(device: str, precision: str, size: int = 256, batch: int = 8) -> dict:
    """The losses of one compiled stylizer step on `device` from seed-0 weights and a fixed batch."""
    import tensorflow as tf

    import speed

    with tf.device(device):
        run = speed.stylizer_step("none", 1, batch, size, precision=precision)
        content = tf.constant(np.random.default_rng(3).random((batch, size, size, 3), np.float32))
        return run(content)


def loss_checks(device: str) -> dict:
    out = {}
    for precision, tolerance in TOLERANCE.items():
        cpu, dev = first_losses("/CPU:0", precision), first_losses(device, precision)
        worst = max(abs(dev[k] - cpu[k]) / max(abs(cpu[k]), 1e-12) for k in cpu)
        out[precision] = {"cpu": cpu, "device": dev, "worst_relative_difference": worst, "tolerance": tolerance,
                          "passed": worst <= tolerance}
    return out


def peak_memory_mb(device: str) -> float | None:
    import tensorflow as tf

    if "GPU" not in device:
        return None
    return tf.config.experimental.get_memory_info(device.strip("/"))["peak"] / 2 ** 20


def reset_peak(device: str):
    import tensorflow as tf

    if "GPU" in device:
        tf.config.experimental.reset_memory_stats(device.strip("/"))


def stylize_checks(device: str) -> dict:
    import tensorflow as tf

    from stylizer_apply import stylize_array, tiled_stylize
    from stylizer_net import build_stylizer

    out = {}
    with tf.device(device):
        net = build_stylizer(1, "none")
        one = np.ones(1, np.float32)
        for side, tile in ((1024, None), (4096, 1024)):
            photo = np.random.default_rng(side).random((side, side, 3)).astype(np.float32)
            reset_peak(device)
            stylize_array(net, photo[:64, :64], one)  # tracing
            t0 = time.perf_counter()
            result = tiled_stylize(net, photo, one, tile) if tile else stylize_array(net, photo, one)
            out[f"stylize_{side}px"] = {"seconds": time.perf_counter() - t0, "tile": tile,
                                        "peak_memory_mb": peak_memory_mb(device), "finite": bool(np.isfinite(
                                            result).all())}
    return out


def training_checks(device: str, folder: Path, steps: int) -> dict:
    import tensorflow as tf

    import content_stream as C
    import input_pipeline

    files = C.content_files(folder)
    out = {}
    for precision in TOLERANCE:
        reset_peak(device)
        with tf.device(device):
            out[precision] = input_pipeline.fed_training(files, 256, 8, steps, precision=precision)
        out[precision]["peak_memory_mb"] = peak_memory_mb(device)
    return out


def vae_check(steps: int) -> dict:
    import builtin_images
    import vae_keras

    with tempfile.TemporaryDirectory() as tmp:
        styles = builtin_images.write_defaults(Path(tmp) / "res", 256)["styles"]
        args = ["train", "--recipe", "cpu-demo", "--run-dir", str(Path(tmp) / "vae"), "--steps", str(steps),
                "--log-every", str(steps), "--set", "snapshot_every=100000"]
        for s in styles:
            args += ["--style", str(s)]
        t0 = time.perf_counter()
        code = vae_keras.main(args)
        seconds = time.perf_counter() - t0
        last = json.loads((Path(tmp) / "vae" / "metrics.jsonl").read_text().splitlines()[-1])
    return {"exit_code": code, "seconds_with_start_up": seconds, "steps": steps, "last_loss": last["loss"],
            "finite": bool(np.isfinite(last["loss"]))}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=iu.HelpFormatter)
    ap.add_argument("--steps", type=int, default=50, help="stylizer training steps per precision")
    ap.add_argument("--vae-steps", type=int, default=20, help="VAE training steps")
    ap.add_argument("--folder", type=Path, default=ROOT / "runs" / "coco_like",
                    help="content photos (made with 2,000 COCO-like photos when missing)")
    ap.add_argument("--cpu", action="store_true", help="run the checks on the CPU when no GPU is visible")
    ap.add_argument("--out", type=Path, help="also write the report here (JSON)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus and not args.cpu:
        print("no GPU is visible to TensorFlow (tf.config.list_physical_devices('GPU') is empty): the GPU path was "
              "not checked. Install TensorFlow with CUDA (pip install 'tensorflow[and-cuda]') on a GPU machine.")
        print(json.dumps({"device": None, "checked": False}))
        return 0
    device = "/GPU:0" if gpus else "/CPU:0"
    name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else "CPU"
    if not has_photos(args.folder):
        import input_pipeline

        input_pipeline.make_folder(args.folder, 2000)
    report = {"device": name, "tensorflow": tf.__version__, "losses": loss_checks(device)}
    report["training"] = training_checks(device, args.folder, args.steps)
    report["vae"] = vae_check(args.vae_steps)
    report.update(stylize_checks(device))
    report["passed"] = all(c["passed"] for c in report["losses"].values()) and report["vae"]["finite"]
    for precision, c in report["losses"].items():
        print(f"first step, {precision}: worst relative difference to the CPU {c['worst_relative_difference']:.2e} "
              f"(tolerance {c['tolerance']:g}): {'PASSED' if c['passed'] else 'FAILED'}")
    for precision, t in report["training"].items():
        print(f"training {precision}: {t['train_images_per_s']:.0f} photos/s, waiting for data "
              f"{100 * t['input_wait_share']:.1f}% of the time, peak memory {t['peak_memory_mb']} MB")
    print(f"VAE: {report['vae']['steps']} steps in {report['vae']['seconds_with_start_up']:.0f} s (with start-up)")
    for side in (1024, 4096):
        s = report[f"stylize_{side}px"]
        print(f"stylize {side} px{' in tiles' if s['tile'] else ''}: {s['seconds']:.2f} s, peak memory "
              f"{s['peak_memory_mb']} MB")
    if args.out:
        iu.atomic_write_json(args.out, report)
    print(json.dumps(report))
    return 0 if report["passed"] else 1


def has_photos(folder: Path) -> bool:
    return folder.is_dir() and any(folder.rglob("*.jpg"))


if __name__ == "__main__":
    sys.exit(main())
