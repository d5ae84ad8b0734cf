"""SAC losses: critic (twin Q, target networks), actor, and temperature."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mural_jax.sac.networks import sample_action


def critic_loss(
    q_params, policy_params, target_q_params, log_alpha, batch, rewards, discount, rng, *, nets
):
    """Mean squared TD error of both Q heads against rewards + discount * V(next_obs).

    `discount` is gamma (1 - terminated) for one-step targets (termination stops bootstrapping,
    truncation does not) and gamma^m (1 - terminated) for m-step ones."""
    mean, log_std = nets.policy.apply(policy_params, batch.next_obs)
    next_action, next_logp = sample_action(mean, log_std, rng)
    next_q = nets.q.apply(target_q_params, batch.next_obs, next_action).min(axis=-1)
    next_v = next_q - jnp.exp(log_alpha) * next_logp
    target = rewards + discount * next_v
    target = jax.lax.stop_gradient(target)
    q = nets.q.apply(q_params, batch.obs, batch.action)
    loss = 0.5 * jnp.mean(jnp.sum((q - target[:, None]) ** 2, axis=-1))
    return loss, {"q_mean": q.mean(), "target_mean": target.mean()}


def actor_loss(policy_params, q_params, log_alpha, obs, rng, *, nets):
    """E[alpha log pi(a|s) - min Q(s, a)] with reparameterised actions."""
    mean, log_std = nets.policy.apply(policy_params, obs)
    action, logp = sample_action(mean, log_std, rng)
    q = nets.q.apply(q_params, obs, action).min(axis=-1)
    loss = jnp.mean(jnp.exp(log_alpha) * logp - q)
    return loss, {"entropy": -logp.mean()}


def alpha_loss(log_alpha, logp, target_entropy):
    """Automatic temperature: drive the policy entropy towards the target."""
    return -jnp.mean(log_alpha * jax.lax.stop_gradient(logp + target_entropy))
