"""Ant mazes: layouts as data, walls that really block the ant, success examples, the oracle.

MJX compilation of the ant is the cost here (tens of seconds on 2 CPU cores), so physics runs
through two jitted functions shared by every test: a rollout and the success-example sampler.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mural_jax.envs import list_envs, make_env
from mural_jax.envs.ant_maze import ONE_WALL, U_MAZE, AntMaze, AntMazeLayout, grid_walls
from mural_jax.envs.point_maze import shortest_path_field

N_ENVS = 4
HORIZON = 30


@functools.cache
def ant() -> AntMaze:
    return make_env("ant_maze", reward="dense")


@functools.cache
def rollout_fn():
    """(rng, start xy, start x-velocity, actions) -> (reset obs, obs per step, dense rewards)."""
    env = ant()

    def rollout(rng, xy, vx, actions):
        state = env.reset(rng)
        ps = env._init_state(rng, xy)
        ps = env.pipeline_init(ps.q, ps.qd.at[0].set(vx))
        state = state.replace(pipeline_state=ps, obs=env._obs(ps))

        def step(s, a):
            s = env.step(s, a)
            return s, (s.obs, s.reward)

        _, (obs, reward) = jax.lax.scan(step, state, actions)
        return env.reset(rng).obs, obs, reward

    return jax.jit(jax.vmap(rollout))


@functools.cache
def examples() -> np.ndarray:
    return np.asarray(jax.jit(ant().success_examples, static_argnums=1)(jax.random.key(3), 16))


def run(xy, vx, seed=0, actions=None):
    keys = jax.random.split(jax.random.key(seed), N_ENVS)
    if actions is None:
        actions = jnp.zeros((N_ENVS, HORIZON, 8))
    xy = jnp.broadcast_to(jnp.asarray(xy, jnp.float32), (N_ENVS, 2))
    vx = jnp.broadcast_to(jnp.asarray(vx, jnp.float32), (N_ENVS,))
    return jax.tree.map(np.asarray, rollout_fn()(keys, xy, vx, actions))


# -- Layouts (numpy only) -----------------------------------------------------------------------


def test_registry_has_both_ant_mazes():
    assert {"ant_maze", "ant_u_maze"} <= set(list_envs())
    assert make_env("ant_u_maze").layout == U_MAZE
    with pytest.raises(ValueError, match="backend='bullet' is not one of mjx, generalized"):
        make_env("ant_maze", backend="bullet")


def test_one_wall_geometry_is_the_papers():
    (cx, cy, hx, hy), *arena = ONE_WALL.walls
    assert (cx - hx, cx + hx, cy - hy, cy + hy) == (-1.25, 1.25, -2.5, 5.5)
    top = max(arena, key=lambda w: w[1])
    assert top[1] - top[3] == 5.5  # the arena's top face is flush with the wall's top end
    assert ONE_WALL.start == (-5.5, 4.5) and ONE_WALL.goal == (5.5, 4.5)
    assert ONE_WALL.episode_length == 400 and ONE_WALL.success_radius == 2.0


def test_grid_walls_merge_runs_and_u_maze_is_closed():
    walls = grid_walls(("###", "#.#"), 2.0)
    assert walls == ((2.0, 0.0, 3.0, 1.0), (0.0, -2.0, 1.0, 1.0), (4.0, -2.0, 1.0, 1.0))
    # The U: outer ring plus the middle arm, whose left end joins the outer wall.
    boxes = U_MAZE.boxes()
    assert boxes[:, 0].min() == -6.0 and boxes[:, 1].max() == 14.0
    assert boxes[:, 2].min() == -6.0 and boxes[:, 3].max() == 14.0
    middle = [w for w in U_MAZE.walls if w[1] == 4.0 and w[2] > 2.0]
    assert middle == [(0.0, 4.0, 6.0, 2.0)]  # x in [-6, 6] at y = 4: the wall between arms


def test_layout_rejects_start_in_wall_naming_it():
    with pytest.raises(ValueError, match=r"start \(0\.0, 1\.0\) lies within 0\.6 of a wall"):
        AntMazeLayout(walls=((0.0, 0.0, 1.0, 2.0),), start=(0.0, 1.0), goal=(5.0, 0.0),
                      bounds=(-8.0, 8.0))  # fmt: skip
    with pytest.raises(ValueError, match="positive sizes"):
        AntMazeLayout(walls=((0.0, 0.0, 0.0, 2.0),), start=(3.0, 1.0), goal=(5.0, 0.0),
                      bounds=(-8.0, 8.0))  # fmt: skip


def test_success_examples_start_clear_of_walls():
    """The paper's +0.5 y offset would start one-wall examples with their legs in our arena's
    top wall (y = 5.5); the layout refuses such offsets and ONE_WALL stops at 0."""
    import dataclasses

    assert ONE_WALL.example_offset_high == (0.5, 0.0)
    with pytest.raises(ValueError, match=r"example_clearance=0\.9 of the wall .* y in \[5\.5, 6\]"):
        dataclasses.replace(ONE_WALL, example_offset_high=(0.5, 0.5))


@pytest.mark.parametrize("layout", [ONE_WALL, U_MAZE], ids=["one_wall", "u_maze"])
def test_oracle_path_goes_around_the_walls(layout):
    field = shortest_path_field(
        layout.boxes(layout.oracle_margin), layout.bounds, layout.goal, layout.grid_spacing
    )
    lo, h = layout.bounds[0], layout.grid_spacing
    i, j = np.round((np.asarray(layout.start) - lo) / h).astype(int)
    straight = np.linalg.norm(np.subtract(layout.goal, layout.start))
    # Both mazes force a detour of roughly twice the straight line or more.
    assert field[i, j] > 1.8 * straight
    assert np.isfinite(field[i, j])


# -- Physics (MJX) ------------------------------------------------------------------------------


def test_shapes_determinism_and_compiled_once():
    first, obs, reward = run(ONE_WALL.start, 0.0, seed=1)
    assert first.shape == (N_ENVS, ant().observation_size) == (N_ENVS, 29)
    assert obs.shape == (N_ENVS, HORIZON, 29) and reward.shape == (N_ENVS, HORIZON)
    assert ant().action_size == 8
    np.testing.assert_allclose(first[:, :2], np.tile(ONE_WALL.start, (N_ENVS, 1)), atol=1e-6)
    again = run(ONE_WALL.start, 0.0, seed=1)
    np.testing.assert_array_equal(obs, again[1])
    other = run(ONE_WALL.start, 0.0, seed=2)
    assert not np.allclose(obs, other[1])  # reset noise differs between seeds
    assert rollout_fn()._cache_size() == 1
    # Standing still near the start: dense reward about -1 (start units), not a success.
    assert np.all(np.abs(reward + 1.0) < 0.1)
    assert not ant().is_success(jnp.asarray(obs[:, -1])).any()


def test_wall_blocks_the_ant_and_open_floor_does_not():
    # Launched at 6 m/s towards the wall's left face (x = -1.25) at wall height (y = 1.5).
    _, obs, _ = run((-2.3, 1.5), 6.0)
    torso_x = obs[..., 0]
    assert torso_x.max() < -1.25 - 0.15  # the torso (radius 0.25) never reaches the face
    # The same launch below the wall (y = -4, open floor) carries the ant past x = -1.25.
    _, obs, _ = run((-2.3, -4.0), 6.0)
    assert obs[..., 0].max() > -1.0  # 0.4 past where the wall stops it


def test_success_examples_follow_the_paper():
    ex = examples()
    env = ant()
    assert ex.shape == (16, 29) and np.all(np.isfinite(ex))
    assert env.is_success(jnp.asarray(ex)).all()
    offset = ex[:, :2] - np.asarray(ONE_WALL.goal)
    # goal + U(-1, 0.5) x U(-2, 0.5), then 10 random steps: near that box, and spread out.
    assert np.all(offset[:, 0] > -2.0) and np.all(offset[:, 0] < 1.5)
    assert np.all(offset[:, 1] > -3.0) and np.all(offset[:, 1] < 1.5)
    assert offset.std(axis=0).min() > 0.1
    assert len(np.unique(ex[:, 7:15].round(3), axis=0)) == 16  # joint poses differ
    strict = env.eval_metrics(jnp.asarray(ex))["strict_success_rate"]
    assert 0.0 <= float(strict) < 1.0  # the 0.5 radius is stricter than the 2.0 one
