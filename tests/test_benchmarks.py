"""The benchmarks behind the docs' speed ratios measure what they say: speed.py's FLOP count against a hand count,
and the PyTorch reference (benchmarks/torch_johnson.py) is the same network as ours, parameter for parameter and
output for output. PyTorch comes from benchmarks/requirements.txt, which .ci/run installs; without it the reference
test says so and skips."""
import importlib.util
import json
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_speed_counts_the_flops_of_a_convolution_and_a_dense_layer_as_a_hand_count():
    speed = load("speed")
    x = keras.Input((10, 12, 8))
    y = keras.layers.Conv2D(16, 3, padding="same")(x)
    z = keras.layers.Conv2D(4, 5, strides=2, padding="valid")(y)
    out = keras.layers.Dense(7)(keras.layers.Flatten()(z))
    model = keras.Model(x, out)
    hand = (2 * 10 * 12 * 16 * (3 * 3 * 8)      # 3x3 conv, same padding: every output pixel, 16 channels
            + 2 * 3 * 4 * 4 * (5 * 5 * 16)      # 5x5 stride-2 valid conv: (10-5)//2+1 = 3 by (12-5)//2+1 = 4
            + 2 * 7 * (3 * 4 * 4))              # dense: 7 outputs of 48 inputs
    assert speed.counted_flops(model, tf.zeros((1, 10, 12, 8))) == hand
    assert speed.counted_flops(model, tf.zeros((3, 10, 12, 8))) == 3 * hand
    features = {"a": tf.zeros((2, 5, 6, 8)), "b": tf.zeros((2, 3, 3, 4))}
    assert speed.gram_flops(features) == 2 * 2 * 30 * 64 + 2 * 2 * 9 * 16


@pytest.mark.parametrize("conditioning,num_styles", [("channels", 2), ("none", 1)])
def test_the_pytorch_reference_is_our_network(conditioning, num_styles):
    torch = pytest.importorskip("torch", reason="PyTorch is a benchmark dependency (pip install -r "
                                                "benchmarks/requirements.txt; .ci/run installs it)")
    from stylizer_net import build_stylizer
    torch_johnson = load("torch_johnson")

    keras.utils.set_random_seed(3)
    ours = build_stylizer(num_styles, conditioning)
    rng = np.random.default_rng(3)
    for layer in ours.layers:  # every weight random, so that scales, shifts and plane kernels all act
        if layer.get_weights():
            layer.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in layer.get_weights()])
    reference = torch_johnson.JohnsonNet(num_styles, conditioning)
    assert sum(p.numel() for p in reference.parameters()) == ours.count_params()
    torch_johnson.copy_from_keras(ours, reference)
    image = rng.uniform(0, 1, (2, 32, 48, 3)).astype(np.float32)
    weights = np.array([[0.3, 0.7], [1.0, 0.0]] if num_styles == 2 else [[1.0], [1.0]], np.float32)
    want = np.asarray(ours({"image": image, "weights": weights}, training=False))
    with torch.no_grad():
        got = reference(torch.from_numpy(image.transpose(0, 3, 1, 2)), torch.from_numpy(weights)).numpy()
    np.testing.assert_allclose(got.transpose(0, 2, 3, 1), want, atol=1e-4)
    assert np.abs(want[0] - want[1]).mean() > 1e-3  # the two images (and, with planes, weights) differ


def test_gpu_check_without_a_gpu_says_so_and_exits_0(capsys):
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible: run benchmarks/gpu_check.py itself")
    assert load("gpu_check").main([]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "no GPU is visible" in out[0] and json.loads(out[-1]) == {"device": None, "checked": False}


def test_the_benchmarks_stylizer_step_trains_the_default_configuration():
    """speed.stylizer_step, which speed.py, input_pipeline.py, gpu_check.py and nstyle_experiment.py time, builds
    the step of today's defaults (its content layer among them) and lowers the loss on a fixed batch."""
    speed = load("speed")
    run = speed.stylizer_step("cin", 3, 2, 32, precision="float32")
    content = np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32)
    losses = [run(content)["loss"] for _ in range(6)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
