"""Reference training steps: the implementations as they were before the speed work of 2026-11-30, kept
so that speed.py can time the current steps against them in the same run and the tests can check that the fast
steps compute the same losses.

    vae_step(vae, optimizer, config, strategy, vgg, style_grams)   the VAE step of vae_keras.make_train_step
    stylizer_step(net, vgg, content_vgg, optimizer, config, layers, strategy)
                                                                   stylizer.make_train_step with einsum Grams

What the fast steps changed, and these keep: Grams as an einsum; every Gram computed where a loss needs it (the VAE's
gram reconstruction and its continuum terms each took the Grams of the same features); the VAE's pairs (2k, 2k+1)
taken by strided slices of whole feature maps (whose gradients scatter into zero tensors the size of the batch).
"""
from __future__ import annotations


def einsum_gram(features):
    import tensorflow as tf

    f = tf.cast(features, tf.float32)
    shape = tf.shape(f)
    denom = tf.cast(shape[1] * shape[2] * shape[3], tf.float32)
    return tf.einsum("bhwc,bhwd->bcd", f, f) / denom


def _grams(features, names):
    return {n: einsum_gram(features[n]) for n in names}


def vae_step(vae, optimizer, config, strategy, vgg=None, style_grams=None):
    """The VAE step before the speed work; same arguments and outputs as vae_keras.make_train_step's step."""
    import tensorflow as tf

    from perceptual import content_loss, style_loss
    from distribute import distributed_step
    from vae_model import (GRAM_WEIGHTS, PERCEPTUAL_LAYERS, PERCEPTUAL_PIXEL_WEIGHT, TEXTURE_LAYERS,
                           DIVERSITY_LAYERS, endpoint_loss, kl_divergence, path_loss, reconstruction_loss)

    variables = vae.encoder.trainable_variables + vae.decoder.trainable_variables
    global_batch, global_pairs = float(config.batch_size), float(config.batch_size // 2)
    replicas = strategy.num_replicas_in_sync
    style_grams = {n: tf.constant(g) for n, g in (style_grams or {}).items()}

    def recon_loss(logits, target, features):
        if config.recon not in ("perceptual", "gram"):
            return reconstruction_loss(config.recon, logits, target)
        pixels = tf.cast(tf.reduce_prod(tf.shape(target)[1:]), tf.float32)
        mse = tf.reduce_mean(tf.square(tf.sigmoid(logits) - target), axis=[1, 2, 3])
        fr, ft = features
        feature = sum(w * content_loss(fr[name], ft[name]) for name, w in PERCEPTUAL_LAYERS.items())
        if config.recon == "perceptual":
            return (feature + PERCEPTUAL_PIXEL_WEIGHT * mse) * pixels
        grams = style_loss(_grams(fr, PERCEPTUAL_LAYERS), _grams(ft, PERCEPTUAL_LAYERS))
        w = GRAM_WEIGHTS
        return (w["gram"] * grams + w["feature"] * feature + w["pixel"] * mse) * pixels

    def diversity(fake_features, real_features, pixels):
        def distance(features, name):
            f = tf.cast(features[name], tf.float32)
            return tf.reduce_mean(tf.square(f[0::2] - f[1::2]), axis=[1, 2, 3])

        return sum(tf.nn.relu(distance(real_features, n) - distance(fake_features, n))
                   for n in DIVERSITY_LAYERS) * pixels

    def decode(z, noise):
        return vae.decoder([z, noise] if config.noise_channels else z, training=True)

    def replica_step(images, labels, eps, noise, t, beta):
        n = tf.shape(images)[0]
        with tf.GradientTape() as tape:
            post = vae.encoder(images, training=True)
            z = post["mean"] + tf.exp(0.5 * post["logvar"]) * eps
            if config.path_weight:
                mid = (1.0 - t[:, None]) * z[0::2] + t[:, None] * z[1::2]
                logits_all = decode(tf.concat([z, mid], 0), tf.concat([noise, noise[0::2]], 0))
            else:
                logits_all = decode(z, noise)
            logits, features = logits_all[:n], None
            terms = {}
            if vgg is not None:
                fake, real = vgg(tf.sigmoid(logits_all)), vgg(images)
                features = ({k: v[:n] for k, v in fake.items()}, real)
            recon = tf.reduce_sum(recon_loss(logits, images, features)) / global_batch
            kl = tf.reduce_sum(kl_divergence(post["mean"], post["logvar"])) / global_batch
            if config.continuum:
                pixels = float(config.size * config.size * 3)
                grams_fake, grams_real = _grams(fake, TEXTURE_LAYERS), _grams(real, TEXTURE_LAYERS)
                if config.path_weight:
                    grams_mid = {k: v[n:] for k, v in grams_fake.items()}
                    a = {k: v[0::2] for k, v in grams_real.items()}
                    b = {k: v[1::2] for k, v in grams_real.items()}
                    terms["path"] = tf.reduce_sum(path_loss(grams_mid, a, b, t, pixels)) / global_pairs
                if config.endpoint_weight:
                    own = {k: v[:n] for k, v in grams_fake.items()}
                    terms["endpoint"] = endpoint_loss(own, labels, style_grams, pixels) / replicas
                if config.diversity_weight:
                    terms["diversity"] = tf.reduce_sum(diversity(features[0], real, pixels)) / global_pairs
            weights = {"path": config.path_weight, "endpoint": config.endpoint_weight,
                       "diversity": config.diversity_weight}
            loss = recon + beta * kl + sum(weights[k] * v for k, v in terms.items())
        grads = tape.gradient(loss, variables)
        grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
        grads, _ = tf.clip_by_global_norm(grads, config.clip_norm)
        optimizer.apply_gradients(zip([g / replicas for g in grads], variables))
        return {"loss": loss, "recon": recon, "kl": kl, **terms}

    return distributed_step(strategy, replica_step)


def stylizer_step(net, vgg, content_vgg, optimizer, config, layers, strategy):
    """The stylizer step before the speed work (its Grams an einsum); same arguments and outputs as
    stylizer.make_train_step's step. (The fused instance norm's folded scale and shift are in the network, which
    both steps share.)"""
    import stylizer

    return stylizer.make_train_step(net, vgg, content_vgg, optimizer, config, layers, strategy,
                                    gram_matrix=einsum_gram)
