"""SAC networks: a tanh-Gaussian policy and twin Q functions (Flax linen MLPs)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class MLP(nn.Module):
    hidden: Sequence[int]
    out: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.out)(x)


class FourierFeatures(nn.Module):
    """[sin, cos](2 pi B x) with B ~ N(0, scale^2) drawn at init and never trained.

    Random Fourier features (Tancik et al. 2020) counter an MLP's bias towards smooth functions
    of a low-dimensional input; for value functions see Yang et al. 2022 ("Overcoming the
    spectral bias of neural value approximation"). B is stored as a parameter, so it is
    checkpointed with the network, but its gradient is stopped, so Adam never moves it (the
    target critic's Polyak copy equals it up to float rounding).
    """

    features: int
    scale: float

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b = self.param("B", nn.initializers.normal(self.scale), (x.shape[-1], self.features))
        z = 2.0 * jnp.pi * x @ jax.lax.stop_gradient(b)
        return jnp.concatenate([jnp.sin(z), jnp.cos(z)], axis=-1)


def encode(obs: jax.Array, features: int, scale: float) -> jax.Array:
    """The observation as the networks see it: raw (features == 0) or Fourier features."""
    return FourierFeatures(features, scale)(obs) if features else obs


class Policy(nn.Module):
    """Gaussian in pre-tanh space: returns (mean, log_std), log_std squashed into a range."""

    hidden: Sequence[int]
    action_size: int
    fourier_features: int = 0
    fourier_scale: float = 0.5

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        obs = encode(obs, self.fourier_features, self.fourier_scale)
        out = MLP(self.hidden, 2 * self.action_size)(obs)
        mean, raw = jnp.split(out, 2, axis=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (jnp.tanh(raw) + 1.0)
        return mean, log_std


class TwinQ(nn.Module):
    """Two independent Q networks; returns shape (..., 2)."""

    hidden: Sequence[int]
    fourier_features: int = 0
    fourier_scale: float = 0.5

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        qs = []
        for _ in range(2):  # each critic draws its own frequencies
            x = encode(obs, self.fourier_features, self.fourier_scale)
            qs.append(MLP(self.hidden, 1)(jnp.concatenate([x, action], axis=-1)))
        return jnp.concatenate(qs, axis=-1)


def sample_action(mean: jax.Array, log_std: jax.Array, rng: jax.Array):
    """Reparameterised tanh-Gaussian sample and its log-probability (with the tanh correction)."""
    std = jnp.exp(log_std)
    u = mean + std * jax.random.normal(rng, mean.shape)
    action = jnp.tanh(u)
    logp = -0.5 * (((u - mean) / std) ** 2 + 2 * log_std + jnp.log(2 * jnp.pi))
    # log(1 - tanh(u)^2), numerically stable form.
    logp = logp - 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    return action, jnp.sum(logp, axis=-1)
