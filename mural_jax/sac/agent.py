"""The SAC learner: state pytree, initialisation, acting, and one update."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import chex
import flax.struct
import jax
import jax.numpy as jnp
import optax

from mural_jax.config import SACConfig
from mural_jax.replay import Transition
from mural_jax.sac import losses
from mural_jax.sac.networks import Policy, TwinQ, sample_action


class Networks(NamedTuple):
    policy: Policy
    q: TwinQ


@flax.struct.dataclass
class SACState:
    """Everything SAC learns: parameters, target critics, temperature, optimiser states."""

    policy_params: chex.ArrayTree
    q_params: chex.ArrayTree
    target_q_params: chex.ArrayTree
    log_alpha: jax.Array
    policy_opt: chex.ArrayTree
    q_opt: chex.ArrayTree
    alpha_opt: chex.ArrayTree


@dataclasses.dataclass(frozen=True)
class SAC:
    """Pure functions over `SACState` for one task's observation and action sizes."""

    config: SACConfig
    obs_size: int
    action_size: int

    @property
    def nets(self) -> Networks:
        c = self.config
        hidden = tuple(c.hidden)
        ff = dict(fourier_features=c.fourier_features, fourier_scale=c.fourier_scale)
        return Networks(Policy(hidden, self.action_size, **ff), TwinQ(hidden, **ff))

    @property
    def optimizer(self) -> optax.GradientTransformation:
        return optax.adam(self.config.learning_rate)

    @property
    def target_entropy(self) -> float:
        te = self.config.target_entropy
        return -float(self.action_size) if te is None else te

    def init(self, rng: jax.Array) -> SACState:
        k_pi, k_q = jax.random.split(rng)
        obs = jnp.zeros((1, self.obs_size))
        act = jnp.zeros((1, self.action_size))
        policy_params = self.nets.policy.init(k_pi, obs)
        q_params = self.nets.q.init(k_q, obs, act)
        log_alpha = jnp.asarray(jnp.log(self.config.init_alpha), jnp.float32)
        opt = self.optimizer
        return SACState(
            policy_params=policy_params,
            q_params=q_params,
            target_q_params=q_params,
            log_alpha=log_alpha,
            policy_opt=opt.init(policy_params),
            q_opt=opt.init(q_params),
            alpha_opt=opt.init(log_alpha),
        )

    def act(self, state: SACState, obs: jax.Array, rng: jax.Array | None) -> jax.Array:
        """Sample from the policy, or its mode (tanh of the mean) when `rng` is None."""
        mean, log_std = self.nets.policy.apply(state.policy_params, obs)
        if rng is None:
            return jnp.tanh(mean)
        return sample_action(mean, log_std, rng)[0]

    def update(
        self,
        state: SACState,
        batch: Transition,
        rewards: jax.Array,
        rng: jax.Array,
        discount: jax.Array | None = None,
    ) -> tuple[SACState, dict[str, jax.Array]]:
        """One gradient step on critic, actor and temperature, then Polyak-average the targets.

        `discount` multiplies V(next_obs) in the critic target; None means the one-step
        gamma (1 - terminated). n-step batches (`replay.n_step_batch`) pass gamma^m (1 - term.).
        """
        chex.assert_rank([batch.obs, batch.action], 2)
        chex.assert_shape(rewards, (batch.obs.shape[0],))
        cfg, opt, nets = self.config, self.optimizer, self.nets
        k_q, k_pi = jax.random.split(rng)
        rewards = rewards * cfg.reward_scale
        if discount is None:
            discount = cfg.gamma * (1.0 - batch.terminated)
        chex.assert_shape(discount, (batch.obs.shape[0],))

        (q_loss, q_info), q_grads = jax.value_and_grad(losses.critic_loss, has_aux=True)(
            state.q_params,
            state.policy_params,
            state.target_q_params,
            state.log_alpha,
            batch,
            rewards,
            discount,
            k_q,
            nets=nets,
        )
        q_updates, q_opt = opt.update(q_grads, state.q_opt)
        q_params = optax.apply_updates(state.q_params, q_updates)

        (pi_loss, pi_info), pi_grads = jax.value_and_grad(losses.actor_loss, has_aux=True)(
            state.policy_params, q_params, state.log_alpha, batch.obs, k_pi, nets=nets
        )
        pi_updates, policy_opt = opt.update(pi_grads, state.policy_opt)
        policy_params = optax.apply_updates(state.policy_params, pi_updates)

        logp = -pi_info["entropy"]
        a_loss, a_grad = jax.value_and_grad(losses.alpha_loss)(
            state.log_alpha, logp, self.target_entropy
        )
        a_update, alpha_opt = opt.update(a_grad, state.alpha_opt)
        log_alpha = optax.apply_updates(state.log_alpha, a_update)

        target_q_params = optax.incremental_update(q_params, state.target_q_params, cfg.tau)
        new_state = SACState(
            policy_params=policy_params,
            q_params=q_params,
            target_q_params=target_q_params,
            log_alpha=log_alpha,
            policy_opt=policy_opt,
            q_opt=q_opt,
            alpha_opt=alpha_opt,
        )
        metrics = {
            "critic_loss": q_loss,
            "actor_loss": pi_loss,
            "alpha_loss": a_loss,
            "alpha": jnp.exp(log_alpha),
            "reward_mean": rewards.mean(),
            **q_info,
            **pi_info,
        }
        return new_state, metrics
