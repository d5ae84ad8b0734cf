"""Dexterous hand task: shapes, determinism, contacts, success examples, compile-once.

MJX compiles slowly on CPU (about a minute per physics function), so the module shares one
jitted vmapped `step` (4 envs) and one jitted `success_examples` across all tests.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mural_jax.envs.hand import DexterousHand, HandConfig, make_dexterous_hand

N_ENVS = 4


@functools.cache
def env() -> DexterousHand:
    return make_dexterous_hand()


@functools.cache
def reset_fn():
    return jax.jit(jax.vmap(env().reset))


@functools.cache
def step_fn():
    return jax.jit(jax.vmap(env().step))


@functools.cache
def success_fn():
    return jax.jit(env().success_examples, static_argnums=1)


def pose_action(pose: np.ndarray) -> jnp.ndarray:
    """The (absolute) action whose servo targets are the joint angles `pose`."""
    e = env()
    return jnp.asarray((pose - e._ctrl_mid) / e._ctrl_half, jnp.float32)


def rollout(keys: jax.Array, actions: jax.Array, steps: int):
    """Observations after each of `steps` steps with fixed per-env actions."""
    state = reset_fn()(keys)
    out = [state.obs]
    for _ in range(steps):
        state = step_fn()(state, actions)
        out.append(state.obs)
    return state, jnp.stack(out, axis=1)


def test_shapes_and_layout():
    e = env()
    assert (e.action_size, e.observation_size) == (24, 57)
    assert e.classifier_obs == (0, 3)
    assert 0.02 <= e.dt <= 0.05
    state = reset_fn()(jax.random.split(jax.random.PRNGKey(0), N_ENVS))
    assert state.obs.shape == (N_ENVS, 57) and state.obs.dtype == jnp.float32
    # The ball starts above the palm, at rest; the hand near its open pose.
    ball = np.asarray(state.obs[:, :3])
    np.testing.assert_allclose(ball[:, 2], HandConfig().ball_start[2])
    assert np.all(np.abs(ball[:, :2] - np.array([0.29, 0.0])) <= 0.01 + 1e-6)
    assert np.all(state.obs[:, 3:9] == 0) and np.all(np.abs(state.obs[:, 9:33]) <= 0.05 + 1e-6)
    assert not np.any(e.is_success(state.obs))


def test_deterministic_and_compiled_once():
    keys = jax.random.split(jax.random.PRNGKey(1), N_ENVS)
    actions = jax.random.uniform(jax.random.PRNGKey(2), (N_ENVS, 24), minval=-1, maxval=1)
    s1, obs1 = rollout(keys, actions, 3)
    s2, obs2 = rollout(keys, actions, 3)
    np.testing.assert_array_equal(obs1, obs2)
    assert np.all(np.isfinite(obs1))
    assert s1.reward.shape == (N_ENVS,) and np.all(s1.done == 0)
    # Different seeds give different starts; actions move the hand.
    assert not np.allclose(obs1[0, 0], obs1[1, 0])
    assert np.abs(obs1[:, -1, 9:33] - obs1[:, 0, 9:33]).max() > 0.05
    assert step_fn()._cache_size() == 1
    assert reset_fn()._cache_size() == 1


def test_open_hand_drops_ball_and_cupped_hand_keeps_it():
    """Contacts: the ball rolls over the open fingers onto the floor (never through it), and
    stays on the hand when the fingers hold the cup pose."""
    e = env()
    flat = pose_action(np.zeros(24, np.float32))
    cup = pose_action(e._cup_pose)
    actions = jnp.stack([flat, flat, cup, cup])
    keys = jax.random.split(jax.random.PRNGKey(3), N_ENVS)
    _, obs = rollout(keys, actions, 40)  # 1.6 s
    z = np.asarray(obs[:, :, 2])
    floor_rest = -0.1 + e.config.ball_radius
    # Open hand: the ball ends on the floor at rest height; landing (soft contact, from 15 cm)
    # sinks it by well under half its radius, never through the floor plane at z = -0.1.
    np.testing.assert_allclose(z[:2, -1], floor_rest, atol=2e-3)
    assert z[:2].min() > floor_rest - e.config.ball_radius / 2
    # Cupped hand: the ball never falls through the palm and ends cradled near the target.
    assert z[2:].min() > 0.02
    assert np.all(e.goal_distance(obs[2:, -1]) < 0.03)
    # Sparse reward is the success test; dense reward is O(1) and better near the target.
    r_dense = e.dense_reward(obs[:, -2], obs[:, -1])
    assert np.all((r_dense >= -3.0) & (r_dense <= 0.0))
    assert r_dense[2:].min() > r_dense[:2].max()


def test_success_examples_pass_is_success_and_are_settled():
    e = env()
    ex = success_fn()(jax.random.PRNGKey(4), 8)
    assert ex.shape == (8, 57)
    assert np.all(e.is_success(ex))
    assert np.all(np.abs(ex[:, 3:6]).max(axis=-1) < 0.1)  # the ball has (nearly) settled
    assert np.all(ex[:, 2] > 0.02)  # resting on the hand, not sunk into the palm
    np.testing.assert_array_equal(ex, success_fn()(jax.random.PRNGKey(4), 8))
    assert not np.allclose(ex, success_fn()(jax.random.PRNGKey(5), 8))
    assert success_fn()._cache_size() == 1


def test_rejects_unknown_reward():
    with pytest.raises(ValueError, match="reward"):
        DexterousHand(reward="shaped")
