"""Style sampler throughput: decoded images per second at a given size by batch size, with the default VAE
architecture, and the cost of writing PNGs. Batch size 1 is the reference each ratio is measured against.

    python benchmarks/sampler.py [--size 224] [--batch-sizes 1,8,16,32,64] [--repeats 5]

Weights are random (throughput does not depend on them); the timing is the decoder's forward pass (a traced
tf.function, warm-up excluded, median of repeats) plus sigmoid, and separately PNG encoding.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import image_utilities as iu  # noqa: E402
import vae_keras as V  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=iu.HelpFormatter)
    ap.add_argument("--size", type=int, default=224, help="VAE image size (a multiple of 32)")
    ap.add_argument("--latent-dim", type=int, default=V.VAEConfig.latent_dim, help="VAE latent dimensions")
    ap.add_argument("--width", type=int, default=V.VAEConfig.width, help="channels of the VAE's first conv")
    ap.add_argument("--batch-sizes", default="1,8,16,32,64", help="decode batch sizes to time")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per batch size (the median counts)")
    args = ap.parse_args(argv)
    import tensorflow as tf

    config = V.VAEConfig(size=args.size, latent_dim=args.latent_dim, width=args.width)
    vae = V.VAE(config)
    decode = tf.function(lambda z: tf.sigmoid(vae.decoder(z, training=False)))
    rows = []
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        z = tf.random.normal((bs, config.latent_dim))
        decode(z)  # trace + warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = decode(z).numpy()
            times.append(time.perf_counter() - t0)
        per = statistics.median(times)
        t0 = time.perf_counter()
        for im in out:
            iu.encode_image(im, ".png")
        png = (time.perf_counter() - t0) / bs
        rows.append((bs, bs / per, 1.0 / (per / bs + png)))
    ref = rows[0][1]
    threads = tf.config.threading.get_intra_op_parallelism_threads() or "all"
    print(f"decoder {args.size}px, latent {config.latent_dim}, width {config.width}; {threads} threads")
    print("| batch | decoded images/s | with PNG encoding | vs batch 1 |\n|---|---|---|---|")
    for bs, rate, with_png in rows:
        print(f"| {bs} | {rate:.1f} | {with_png:.1f} | {rate / ref:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
