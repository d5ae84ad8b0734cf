"""SAC's pieces against direct computations: the tanh-Gaussian log-density, the critic target
(termination stops bootstrapping, truncation does not), the Polyak step, the temperature's
direction, reward scaling and the deterministic action. (That SAC learns a task end to end is
tests/test_train.py's.)"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

from mural_jax.config import SACConfig
from mural_jax.replay import Transition
from mural_jax.sac import losses
from mural_jax.sac.agent import SAC
from mural_jax.sac.networks import sample_action

CFG = SACConfig(hidden=(16, 16), learning_rate=1e-2, tau=0.1, gamma=0.9, init_alpha=0.5)


def _batch(rng, n=2, obs=3, act=2, terminated=(0.0, 1.0), truncated=(1.0, 0.0)):
    k1, k2, k3 = jax.random.split(rng, 3)
    return Transition(
        obs=jax.random.normal(k1, (n, obs)),
        action=jax.random.uniform(k2, (n, act), minval=-0.9, maxval=0.9),
        reward=jnp.zeros((n,)),
        next_obs=jax.random.normal(k3, (n, obs)),
        terminated=jnp.asarray(terminated),
        truncated=jnp.asarray(truncated),
    )


def test_tanh_gaussian_log_density_is_the_change_of_variables():
    mean = jnp.array([[0.3, -1.2], [2.0, 0.0]])
    log_std = jnp.array([[-0.5, 0.2], [0.1, -1.0]])
    rng = jax.random.PRNGKey(0)
    action, logp = sample_action(mean, log_std, rng)
    u = mean + jnp.exp(log_std) * jax.random.normal(rng, mean.shape)  # the same draw
    np.testing.assert_allclose(action, jnp.tanh(u), rtol=1e-6)
    # log N(u; mean, std) - log |d tanh(u) / du| = log N - log(1 - tanh(u)^2), per dimension.
    direct = norm.logpdf(u, mean, jnp.exp(log_std)) - jnp.log1p(-(jnp.tanh(u) ** 2))
    np.testing.assert_allclose(logp, direct.sum(-1), rtol=1e-5, atol=1e-5)


def test_critic_target_bootstraps_through_truncation_but_not_termination():
    sac = SAC(CFG, obs_size=3, action_size=2)
    state = sac.init(jax.random.PRNGKey(1))
    batch = _batch(jax.random.PRNGKey(2))  # row 0 truncated, row 1 terminated
    rewards = jnp.array([1.0, 2.0])
    rng = jax.random.PRNGKey(3)
    _, metrics = sac.update(state, batch, rewards, rng)
    # The target by hand, with the key the update gives the critic loss.
    k_q, _ = jax.random.split(rng)
    mean, log_std = sac.nets.policy.apply(state.policy_params, batch.next_obs)
    a2, logp2 = sample_action(mean, log_std, k_q)
    q2 = sac.nets.q.apply(state.target_q_params, batch.next_obs, a2).min(-1)
    v2 = q2 - CFG.init_alpha * logp2
    target = jnp.array([1.0 + CFG.gamma * v2[0], 2.0])  # terminated: the reward alone
    np.testing.assert_allclose(metrics["target_mean"], target.mean(), rtol=1e-5)
    # And the loss is half the squared error of both heads against it.
    q = sac.nets.q.apply(state.q_params, batch.obs, batch.action)
    loss, _ = losses.critic_loss(
        state.q_params, state.policy_params, state.target_q_params, state.log_alpha, batch,
        rewards, CFG.gamma * (1.0 - batch.terminated), k_q, nets=sac.nets,
    )  # fmt: skip
    np.testing.assert_allclose(loss, 0.5 * jnp.mean(jnp.sum((q - target[:, None]) ** 2, -1)))
    np.testing.assert_allclose(metrics["critic_loss"], loss, rtol=1e-6)


def test_target_critics_take_a_polyak_step_towards_the_new_critics():
    sac = SAC(CFG, obs_size=3, action_size=2)
    state = sac.init(jax.random.PRNGKey(4))
    # Move the targets off the critics first, so the step's direction shows.
    state = state.replace(target_q_params=jax.tree.map(lambda p: p + 0.3, state.target_q_params))
    new, _ = sac.update(state, _batch(jax.random.PRNGKey(5)), jnp.ones(2), jax.random.PRNGKey(6))
    leaves = zip(
        jax.tree.leaves(new.target_q_params),
        jax.tree.leaves(new.q_params),
        jax.tree.leaves(state.target_q_params),
        strict=True,
    )
    for target, q, old in leaves:
        np.testing.assert_allclose(target, CFG.tau * q + (1 - CFG.tau) * old, rtol=1e-5, atol=1e-7)
    assert not np.allclose(jax.tree.leaves(new.q_params)[0], jax.tree.leaves(state.q_params)[0])


@pytest.mark.parametrize("target_entropy, direction", [(50.0, 1.0), (-50.0, -1.0)])
def test_temperature_rises_below_the_entropy_target_and_falls_above(target_entropy, direction):
    sac = SAC(dataclasses.replace(CFG, target_entropy=target_entropy), 3, 2)
    state = sac.init(jax.random.PRNGKey(7))
    new, metrics = sac.update(
        state, _batch(jax.random.PRNGKey(8)), jnp.ones(2), jax.random.PRNGKey(9)
    )
    # The policy's entropy (a few nats for 2 dimensions) is far below 50 and far above -50.
    assert np.sign(float(new.log_alpha - state.log_alpha)) == direction
    grad = jax.grad(losses.alpha_loss)(state.log_alpha, -metrics["entropy"], target_entropy)
    assert np.sign(float(grad)) == -direction


def test_reward_scale_multiplies_the_rewards_in_the_target():
    batch = _batch(jax.random.PRNGKey(10), terminated=(1.0, 1.0), truncated=(0.0, 0.0))
    rewards = jnp.array([1.0, 3.0])
    out = {}
    for scale in (1.0, 4.0):
        sac = SAC(dataclasses.replace(CFG, reward_scale=scale), 3, 2)
        state = sac.init(jax.random.PRNGKey(11))
        out[scale] = sac.update(state, batch, rewards, jax.random.PRNGKey(12))[1]
    # Both rows terminated: the target is the scaled reward itself.
    np.testing.assert_allclose(out[1.0]["target_mean"], 2.0, rtol=1e-6)
    np.testing.assert_allclose(out[4.0]["target_mean"], 8.0, rtol=1e-6)
    np.testing.assert_allclose(out[4.0]["reward_mean"], 8.0, rtol=1e-6)


def test_act_without_a_key_is_the_mode_and_with_one_a_bounded_sample():
    sac = SAC(CFG, obs_size=3, action_size=2)
    state = sac.init(jax.random.PRNGKey(13))
    obs = jax.random.normal(jax.random.PRNGKey(14), (5, 3)) * 3
    mean, _ = sac.nets.policy.apply(state.policy_params, obs)
    np.testing.assert_allclose(sac.act(state, obs, None), jnp.tanh(mean), rtol=1e-6)
    sampled = sac.act(state, obs, jax.random.PRNGKey(15))
    assert sampled.shape == (5, 2) and np.all(np.abs(sampled) < 1.0)
    assert not np.allclose(sampled, jnp.tanh(mean))
