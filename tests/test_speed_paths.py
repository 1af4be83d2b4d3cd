"""The fast training steps compute the losses of the steps they replaced (benchmarks/reference_steps.py),
and the VAE's bfloat16 precision stays close to float32."""
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import stylizer as S
import stylizer_run
import style_images
import vae_keras as V
from perceptual import gram_matrix, vgg_features
from distribute import dtype_policy, make_strategy, per_replica
from stylizer_data import STYLE_LAYERS
from stylizer_net import build_stylizer
import vae_model as M
from vae_model import VAE

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import reference_steps as R  # noqa: E402

CONTINUUM = dict(noise_channels=2, path_weight=1.0, endpoint_weight=1.0, diversity_weight=10.0)


def vae_config(**extra):
    """A tiny gram VAE with the seed decoder and its layout term, the configuration the reference step was written
    for (no continuum terms unless `extra` names them)."""
    settings = dict(styles=("builtin:night_swirls", "builtin:honeycomb"), size=32, latent_dim=8, width=8,
                    batch_size=6, recon="gram", beta=0.1, decoder="seed", feature_weight=M.GRAM_WEIGHTS["feature"],
                    precision="float32", lr_schedule="constant", noise_channels=0, path_weight=0.0,
                    endpoint_weight=0.0, diversity_weight=0.0)
    return V.VAEConfig(**{**settings, **extra})


def first_vae_losses(make_step, config, precision="float32"):
    """The losses of one step from the same initial weights and the same batch (that of step 1)."""
    strategy = make_strategy("default")
    styles = style_images.load_styles(config.styles, config.size, 64)
    keras.utils.set_random_seed(0)
    with dtype_policy(precision):
        vae = VAE(config)
        vgg = vgg_features(config.vgg_layers(), name=f"vgg_{precision}")
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(vae.encoder.trainable_variables + vae.decoder.trainable_variables)
    grams = V.mean_style_grams(styles, config, vgg, crops=8) if config.endpoint_weight else None
    step = make_step(vae, optimizer, config, strategy, vgg, grams)
    rng = V.batch_rng(config.seed, 1)
    images, labels = V.crop_batch(styles, config, rng, config.batch_size)
    t = rng.uniform(0.0, 1.0, config.batch_size // 2).astype(np.float32)
    eps, noise = V.step_noise(config, 1)
    batch = per_replica(strategy, config.batch_size, images, labels.astype(np.int32), eps, noise)
    return {k: float(v) for k, v in step(*batch, tf.constant(t), tf.constant(0.1)).items()}


@pytest.mark.parametrize("extra", [{}, CONTINUUM], ids=["gram", "continuum"])
def test_vae_step_computes_the_reference_losses(extra):
    config = vae_config(**extra)
    fast, reference = first_vae_losses(V.make_train_step, config), first_vae_losses(R.vae_step, config)
    assert fast.keys() == reference.keys()
    assert set(fast) >= ({"path", "endpoint", "diversity"} if extra else {"recon"})
    for key, value in reference.items():
        assert fast[key] == pytest.approx(value, rel=1e-4), key


def test_vae_bfloat16_step_is_close_to_float32():
    config = vae_config(**CONTINUUM)
    full = first_vae_losses(V.make_train_step, config)
    half = first_vae_losses(V.make_train_step, config, "mixed_bfloat16")
    assert keras.mixed_precision.global_policy().name == "float32"
    for key, value in full.items():
        assert np.isfinite(half[key]) and half[key] == pytest.approx(value, rel=0.03), key


def test_vae_trains_in_bfloat16_and_samples_in_float32(style_files, tmp_path):
    run = tmp_path / "bf16"
    args = ["train", "--recipe", "seed-original", "--run-dir", str(run), "--style", style_files[0], "--style",
            style_files[1], "--size", "32",
            "--set", "latent_dim=8", "--set", "width=8", "--steps", "3", "--batch-size", "4", "--set", "recon=gram",
            "--set", "encode_crops=4", "--log-every", "1", "--precision", "mixed_bfloat16", *sum(
                (["--set", f"{k}={v}"] for k, v in CONTINUUM.items()), [])]
    assert V.main(args) == 0
    vae, config = V.load_vae(run)
    assert config.precision == "mixed_bfloat16" and vae.decoder.dtype_policy.name == "float32"
    images = vae.decode(np.zeros((2, 8), np.float32))
    assert images.dtype == np.float32 and np.isfinite(images).all()
    latents = np.load(run / "latents.npz")
    assert all(latents[k].dtype == np.float32 for k in latents.files if latents[k].dtype.kind == "f")


def test_stylizer_step_computes_the_reference_losses():
    layers = list(STYLE_LAYERS)
    config = stylizer_run.StylizerConfig(conditioning="channels", size=64, batch_size=2, precision="float32")
    vgg = vgg_features(sorted(set(layers) | {config.content_layer}), name="step_vgg")
    content_vgg = vgg_features([config.content_layer], name="step_content_vgg")
    rng = np.random.default_rng(0)
    content = tf.constant(rng.random((2, 64, 64, 3), np.float32))
    weights = tf.constant([[1.0, 0.0], [0.3, 0.7]])
    style = tf.constant(rng.random((2, 64, 64, 3), np.float32))
    grams = {n: gram_matrix(f) for n, f in vgg(style).items() if n in layers}
    out = {}
    for name, make in (("fast", S.make_train_step), ("reference", R.stylizer_step)):
        keras.utils.set_random_seed(0)
        net = build_stylizer(2, "channels")
        optimizer = keras.optimizers.Adam(1e-3)
        optimizer.build(net.trainable_variables)
        step = make(net, vgg, content_vgg, optimizer, config, layers, make_strategy("default"))
        out[name] = {k: float(v) for k, v in step(content, weights, grams).items()}
    for key, value in out["reference"].items():
        assert out["fast"][key] == pytest.approx(value, rel=1e-4), key


@pytest.mark.parametrize("conditioning", ["channels", "balance", "cin"])
def test_fused_norm_with_scale_and_shift_matches_the_unfused_norm(conditioning):
    """The fast instance norm folds each image's scale and shift into the fused kernel; the moments path applies
    them afterwards. A batch of two images at different strengths, through every norm of a net whose conditioning
    has been made strong, gives the same pictures both ways, and different pictures per strength."""
    from conftest import gradient_image, styled_net

    import stylizer_net as N

    net = styled_net(conditioning)
    images = tf.constant(np.stack([gradient_image(48, 64, seed=1), gradient_image(48, 64, seed=2)]))
    weights = tf.constant([[1.0, 0.0], [0.2, 0.8]])
    fused = net({"image": images, "weights": weights}).numpy()
    with N.unfused_norms(net):
        unfused = net({"image": images, "weights": weights}).numpy()
    np.testing.assert_allclose(fused, unfused, atol=2e-5)
    swapped = net({"image": images, "weights": weights[::-1]}).numpy()
    assert np.abs(swapped - fused).mean() > 1e-2


def test_modulated_norm_matches_group_norm_then_scale_and_shift():
    """The texture decoder's norm (one fused kernel) gives keras's per-image instance norm (GroupNormalization with a
    group per channel) followed by the per-image scale and shift, in value and in every gradient, at a size that is
    not square; and the scale and shift do move the result."""
    from stylizer_net import ModulatedInstanceNorm

    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(1.0, 3.0, (3, 24, 40, 5)).astype(np.float32))
    scale = tf.constant(rng.normal(1.0, 0.5, (3, 5)).astype(np.float32))
    shift = tf.constant(rng.normal(0.0, 0.5, (3, 5)).astype(np.float32))
    weight = tf.constant(rng.normal(size=(3, 24, 40, 5)).astype(np.float32))
    group_norm = keras.layers.GroupNormalization(groups=-1, center=False, scale=False, epsilon=1e-5)
    out = {}
    for name, norm in (("fused", lambda a, s, b: ModulatedInstanceNorm()([a, s, b])),
                       ("keras", lambda a, s, b: group_norm(a) * s[:, None, None, :] + b[:, None, None, :])):
        with tf.GradientTape() as tape:
            tape.watch([x, scale, shift])
            y = norm(x, scale, shift)
            loss = tf.reduce_sum(y * weight)
        out[name] = [y, *tape.gradient(loss, [x, scale, shift])]
    for fused, reference in zip(out["fused"], out["keras"]):
        np.testing.assert_allclose(fused.numpy(), reference.numpy(), rtol=1e-4, atol=1e-4)
    plain = ModulatedInstanceNorm()([x, tf.ones_like(scale), tf.zeros_like(shift)])
    assert np.abs(plain.numpy() - out["fused"][0].numpy()).mean() > 0.1


@pytest.mark.parametrize("kernel, channels, height, width", [(9, 32, 20, 14), (3, 5, 8, 12)])
def test_blocked_conv_is_the_plain_conv(kernel, channels, height, width):
    """The stylizer's last convolution on the space-to-depth view gives keras's Conv2D with the same variables, in
    value and in the gradients of the kernel, the bias and the input (a non-square input, two kernel sizes)."""
    from stylizer_net import BlockedConv2D

    rng = np.random.default_rng(5)
    x = tf.constant(rng.normal(size=(2, height + kernel - 1, width + kernel - 1, channels)).astype(np.float32))
    blocked = BlockedConv2D(3, kernel, padding="valid", bias_initializer="random_normal")
    plain = keras.layers.Conv2D(3, kernel, padding="valid")
    blocked.build(x.shape), plain.build(x.shape)
    plain.set_weights(blocked.get_weights())
    weight = tf.constant(rng.normal(size=(2, height, width, 3)).astype(np.float32))
    out = {}
    for name, layer in (("blocked", blocked), ("plain", plain)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * weight)
        out[name] = [y, *tape.gradient(loss, [x, *layer.trainable_variables])]
    assert out["blocked"][0].shape == (2, height, width, 3)
    assert np.abs(out["plain"][0].numpy()).mean() > 0.1
    graph = tf.function(blocked).get_concrete_function(x).graph  # the blocked path is the one that ran
    assert {"SpaceToDepth", "DepthToSpace"} <= {op.type for op in graph.get_operations()}
    for fast, reference in zip(out["blocked"], out["plain"]):
        np.testing.assert_allclose(fast.numpy(), reference.numpy(), rtol=1e-4, atol=1e-4)


def test_bfloat16_norms_without_casts_give_the_cast_path():
    """Under mixed_bfloat16 the instance norms take bfloat16 activations straight into the fused kernel (no cast to
    float32 and back). The same weights through the net in bfloat16 with and without the casts give the same
    pictures (the kernel computes in float32 inside), close to the float32 net's, and the same training gradients
    (which go through the blocked last convolution too); the native graph has fewer casts."""
    from conftest import gradient_image, styled_net

    import stylizer_net as N
    from distribute import dtype_policy

    reference = styled_net("cin")
    images = tf.constant(np.stack([gradient_image(64, 64, seed=1), gradient_image(64, 64, seed=2)]))
    weights = tf.constant([[1.0, 0.0], [0.3, 0.7]])
    full = reference({"image": images, "weights": weights}).numpy()
    with dtype_policy("mixed_bfloat16"):
        half = N.build_stylizer(2, "cin")
    half.set_weights(reference.get_weights())
    out, casts, grads = {}, {}, {}
    target = tf.constant(np.random.default_rng(0).random(images.shape).astype(np.float32))
    for native in (True, False):
        N.NATIVE_BFLOAT16_NORM = native
        try:
            forward = tf.function(lambda x, w: half({"image": x, "weights": w}))
            graph = forward.get_concrete_function(images, weights).graph
            casts[native] = sum(op.type == "Cast" for op in graph.get_operations())
            out[native] = forward(images, weights).numpy()

            @tf.function
            def gradients():
                with tf.GradientTape() as tape:
                    y = half({"image": images, "weights": weights}, training=True)
                    loss = tf.reduce_mean(tf.square(tf.cast(y, tf.float32) - target))
                return tape.gradient(loss, half.trainable_variables)
            grads[native] = [g.numpy() for g in gradients()]
        finally:
            N.NATIVE_BFLOAT16_NORM = True
    assert casts[True] < casts[False] - len(N.instance_norms(half)), casts
    np.testing.assert_allclose(out[True], out[False], atol=1e-2)
    assert np.abs(out[True] - full).mean() < 0.02
    # Training's gradients through the norms agree too (bfloat16 rounding apart), weight by weight.
    for native, cast in zip(grads[True], grads[False]):
        scale = np.abs(cast).max() + 1e-12
        assert np.abs(native - cast).max() <= 0.05 * scale


def test_reflection_pad_is_the_same_in_training_and_inference():
    import stylizer_net as N

    x = tf.random.uniform((2, 9, 7, 3), seed=1)
    for pad in (1, 4):
        layer = N.ReflectionPad(pad)
        want = np.pad(x.numpy(), [(0, 0), (pad, pad), (pad, pad), (0, 0)], mode="reflect")
        np.testing.assert_array_equal(layer(x, training=False).numpy(), want)
        np.testing.assert_array_equal(layer(x, training=True).numpy(), want)

