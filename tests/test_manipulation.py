"""MJX manipulation tasks: shapes, determinism, contacts, scripted success, success examples.

Compiling an MJX step takes ~15 s on a small CPU, so each task compiles one step function
(scripted or random actions, traced door target) shared by every test through a cache; rollouts
are Python loops over it.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mural_jax.envs.manipulation import (
    ManipulationTask,
    SawyerDoor,
    make_door,
    make_pick,
    make_push,
)

FACTORIES = {"sawyer_push": make_push, "sawyer_door": make_door, "sawyer_pick": make_pick}
NAMES = tuple(FACTORIES)
N_ENVS = 16
SIZES = {"sawyer_push": (4, 2), "sawyer_door": (4, 3), "sawyer_pick": (7, 4)}


@functools.cache
def task_of(name: str) -> ManipulationTask:
    return FACTORIES[name]()


@functools.cache
def step_fn(name: str):
    """jit(state, key, random, door_target) -> next state, for N_ENVS envs.

    The action is the scripted controller's, or uniformly random where `random` is 1. Every
    rollout in this file goes through this one compiled step.
    """
    task = task_of(name)

    def policy(obs, target):
        if isinstance(task, SawyerDoor):
            return task.scripted_action(obs, target)
        return task.scripted_action(obs)

    def step(state, key, random, target):
        noise = jax.random.uniform(key, (N_ENVS, task.action_size), minval=-1, maxval=1)
        scripted = jax.vmap(policy, in_axes=(0, None))(state.obs, target)
        return jax.vmap(task.step)(state, jnp.where(random > 0, noise, scripted))

    return jax.jit(step)


def rollout(name: str, seed: int, random: int, target: float = 0.8):
    """Numpy (obs, qpos, reward) of one episode of N_ENVS envs: (T+1, N, ...), (T, N)."""
    task = task_of(name)
    k_reset, k_act = jax.random.split(jax.random.PRNGKey(seed))
    state = jax.vmap(task.reset)(jax.random.split(k_reset, N_ENVS))
    obs, qpos, reward = [state.obs], [state.pipeline_state.qpos], []
    for key in jax.random.split(k_act, task.episode_length):
        state = step_fn(name)(state, key, random, target)
        obs.append(state.obs)
        qpos.append(state.pipeline_state.qpos)
        reward.append(state.reward)
    return np.stack(obs), np.stack(qpos), np.stack(reward)


@functools.cache
def scripted(name: str, seed: int = 0):
    """Numpy (obs, qpos, reward) of scripted episodes from random starts."""
    return rollout(name, seed, 0)


@functools.cache
def random_play(name: str):
    return rollout(name, 1, 1)


@pytest.mark.parametrize("name", NAMES)
def test_sizes_and_shapes(name):
    task = task_of(name)
    obs_size, act_size = SIZES[name]
    assert (task.observation_size, task.action_size) == (obs_size, act_size)
    assert task.episode_length == 100
    lo, hi = task.classifier_obs
    assert 0 <= lo < hi <= obs_size
    state = jax.eval_shape(task.reset, jax.random.PRNGKey(0))
    chex.assert_shape(state.obs, (obs_size,))
    assert state.obs.dtype == jnp.float32
    nxt = jax.eval_shape(task.step, state, jnp.zeros(act_size))
    chex.assert_shape([nxt.obs, nxt.reward, nxt.done], [(obs_size,), (), ()])
    with pytest.raises(ValueError, match="action shape"):
        jax.eval_shape(task.step, state, jnp.zeros(act_size + 1))
    with pytest.raises(ValueError, match="reward"):
        FACTORIES[name](reward="shaped")


@pytest.mark.parametrize("name", NAMES)
def test_reset_is_deterministic_and_random(name):
    task = task_of(name)
    reset = jax.jit(jax.vmap(task.reset))
    keys = jax.random.split(jax.random.PRNGKey(3), 8)
    a, b = reset(keys).obs, reset(keys).obs
    np.testing.assert_array_equal(a, b)
    assert np.all(np.std(np.asarray(a), axis=0)[: task.action_size] > 1e-3)  # random starts
    assert not np.any(task.is_success(a))
    hand = np.asarray(a)[:, : len(task.hand_axes)]
    assert np.all((hand >= np.asarray(task.hand_low)) & (hand <= np.asarray(task.hand_high)))


@pytest.mark.parametrize("name", NAMES)
def test_scripted_controller_succeeds_from_random_starts(name):
    task = task_of(name)
    obs, _, reward = scripted(name)
    final = np.asarray(task.is_success(obs[-1]))
    assert final.mean() >= 0.9, f"{name}: scripted success {final.mean():.2f}"
    assert not np.any(task.is_success(obs[0]))
    # The step's reward is the sparse success reward of the new state.
    np.testing.assert_array_equal(reward, np.asarray(task.is_success(obs[1:]), np.float32))
    assert np.all(np.isfinite(obs))


@pytest.mark.parametrize("name", NAMES)
def test_step_is_deterministic_and_compiled_once(name):
    first = scripted(name)
    for x, y in zip(first, rollout(name, 0, 0), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(rollout(name, 5, 0, 0.7)[0][0], first[0][0])
    random_play(name)
    # Hundreds of calls with new states, keys, policies and door targets: one compilation.
    assert step_fn(name)._cache_size() == 1


@pytest.mark.parametrize("name", NAMES)
def test_random_play_stays_physical(name):
    """Random actions: finite states, the hand inside its workspace, objects on the table."""
    task = task_of(name)
    obs, qpos, _ = random_play(name)
    assert np.all(np.isfinite(obs)) and np.all(np.isfinite(qpos))
    n = len(task.hand_axes)
    slack = 0.01  # the drive's tracking error
    assert np.all(obs[..., :n] >= np.asarray(task.hand_low) - slack)
    assert np.all(obs[..., :n] <= np.asarray(task.hand_high) + slack)
    if name == "sawyer_push":
        assert np.all(np.abs(qpos[..., 4]) < 0.003)  # puck z: on the table, never launched
    if name == "sawyer_pick":
        assert np.all(obs[..., 5] > 0.02 - 0.003)  # ball never sinks into the table
    if name == "sawyer_door":
        assert np.all((obs[..., 3] > -0.01) & (obs[..., 3] < task.max_angle + 0.01))


def test_push_contacts():
    """The hand pushes the puck: the puck moves, never overlaps the hand, stays upright."""
    task = task_of("sawyer_push")
    for obs, qpos, _ in (scripted("sawyer_push"), random_play("sawyer_push")):
        gap = np.linalg.norm(obs[..., :2] - obs[..., 2:4], axis=-1)
        assert gap.min() > 0.045 - 0.006  # centre distance at contact: 0.045
        assert np.all(np.abs(qpos[..., 4]) < 0.003)
    obs = scripted("sawyer_push")[0]
    moved = np.linalg.norm(obs[-1, :, 2:4] - obs[0, :, 2:4], axis=-1)
    assert np.all(moved > 0.04)
    assert np.all(task.goal_distance(obs[-1]) < task.goal_distance(obs[0]))


def test_door_stops_at_its_limit():
    """Pulling for 1.2 rad opens the door to its joint limit (0.83) and no further."""
    task = task_of("sawyer_door")
    obs = rollout("sawyer_door", 0, 0, 1.2)[0]
    angle = obs[..., 3]
    assert angle.max() <= task.max_angle + 0.01
    assert np.mean(angle[-1] > task.max_angle - 0.03) >= 0.9  # it did reach the limit
    closed = scripted("sawyer_door")[0][..., 3]
    assert closed.min() >= -0.01  # and never opens the other way


def test_pick_grasp_holds_the_ball():
    """The lifted ball is held between the fingers (they stop on it, not pass through it)."""
    obs = scripted("sawyer_pick")[0]
    lifted = obs[..., 5] > 0.06
    assert lifted.any()
    opening = obs[..., 6][lifted]
    assert np.all(opening > 0.02 - 0.004)  # ball radius 0.02, less the contacts' give
    hand_to_ball = obs[..., :3][lifted] - obs[..., 3:6][lifted]
    assert np.all(np.abs(hand_to_ball[:, :2]) < 0.01)
    assert np.all(np.abs(hand_to_ball[:, 2] - 0.04) < 0.02)


@pytest.mark.parametrize("name", NAMES)
def test_success_examples(name):
    task = task_of(name)
    if name == "sawyer_push":
        examples = jax.jit(task.success_examples, static_argnums=1)(jax.random.PRNGKey(0), 64)
        other = task.success_examples(jax.random.PRNGKey(1), 64)
        assert not np.allclose(examples, other)
        goal = np.asarray(task.goal)
        assert np.all(np.abs(np.asarray(examples)[:, 2:4] - goal) <= 0.01 + 1e-6)
    else:
        # success_examples = select_successes(scripted_rollout); the rollout is tested above,
        # and the task's own composition (the trainer's) once here at a small size.
        examples = task.select_successes(jax.random.PRNGKey(0), scripted(name)[0], 64)
        own = jax.jit(task.success_examples, static_argnums=1)(jax.random.PRNGKey(0), 8)
        assert np.all(task.is_success(own)), name
    chex.assert_shape(examples, (64, task.observation_size))
    assert np.all(task.is_success(examples))
    # The dense oracle prefers success examples to start states.
    start = scripted(name)[0][0]
    assert task.dense_reward(examples, examples).mean() > task.dense_reward(start, start).max()
    # Traceable and vmappable over seeds, as the trainer calls it.
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    shaped = jax.eval_shape(jax.vmap(lambda k: task.success_examples(k, 8)), keys)
    chex.assert_shape(shaped, (3, 8, task.observation_size))


def test_select_successes_prefers_successes():
    task = task_of("sawyer_door")
    pool = jnp.zeros((10, 4)).at[3, 3].set(0.8).at[7, 3].set(0.81)
    chosen = np.asarray(task.select_successes(jax.random.PRNGKey(0), pool, 2))
    np.testing.assert_allclose(np.sort(chosen[:, 3]), [0.8, 0.81])
