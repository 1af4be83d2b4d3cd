import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest


@pytest.fixture(scope="session")
def style_files(tmp_path_factory):
    """The two built-in styles as 96 px PNG files."""
    import builtin_images
    import image_utilities as iu

    d = tmp_path_factory.mktemp("styles")
    paths = []
    for name, im in builtin_images.default_styles(96).items():
        paths.append(str(d / f"{name}.png"))
        iu.save_image(paths[-1], im)
    return paths


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def gradient_image(h, w, seed=0):
    """A smooth, non-symmetric test picture with texture, in [0,1]."""
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / max(w - 1, 1), y / max(h - 1, 1), 0.5 + 0.5 * np.sin((x + 2 * y) / 5.0)], -1)
    return np.clip(img + r.normal(0, 0.02, img.shape), 0, 1).astype(np.float32)


def snapshot_image_steps(run_dir) -> list[int]:
    """Steps at which the run's TensorBoard events hold a `snapshot` image, read with TensorFlow's own event reader
    (what `tensorboard --logdir RUN` lists under Images)."""
    import tensorflow as tf

    steps = []
    for events in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            steps += [event.step for v in event.summary.value
                      if v.tag == "snapshot" and v.metadata.plugin_data.plugin_name == "images"]
    return sorted(steps)


def styled_net(conditioning: str, num_styles: int = 2, seed: int = 0):
    """An untrained net whose style conditioning is made strong: random per-style scales and shifts (cin) or
    random plane kernels, so that strengths 0 and 1 give clearly different pictures. Seeded throughout, the
    convolutions too: the tests that measure these nets see the same net on every run."""
    import keras

    import stylizer_net as N

    keras.utils.set_random_seed(seed)
    net = N.build_stylizer(num_styles, conditioning)
    rng = np.random.default_rng(seed)
    for norm in N.instance_norms(net):
        if conditioning == "cin":
            norm.gamma.assign(rng.uniform(0.5, 1.5, norm.gamma.shape).astype(np.float32))
            norm.beta.assign(rng.normal(0, 0.5, norm.beta.shape).astype(np.float32))
        else:
            norm.plane_kernel.assign(rng.normal(0, 1.0, norm.plane_kernel.shape).astype(np.float32))
    return net


def save_as_run(net, conditioning: str, run_dir, num_styles: int = 2):
    """A stylizer run folder holding `net`, as training would write it (config, styles.json, one checkpoint)."""
    import image_utilities as iu
    import stylizer_run as R
    from run_dir import Run

    names = [f"style_{k}" for k in range(num_styles)]
    run = Run(run_dir, R.StylizerConfig(style_images=tuple(f"{n}.png" for n in names), conditioning=conditioning,
                                        steps=1))
    run.checkpoint(net=net)
    run.save(1)
    iu.atomic_write_json(run.path / "styles.json", {"style_names": names, "num_styles": num_styles})
    return run.path


def free_ports(n):
    """n free TCP ports of 127.0.0.1 (for a multi-worker cluster on loopback)."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports
