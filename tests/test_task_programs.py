"""Every registered task trains through the same trainer.

Compiling a 3D task's training chunk takes minutes on 2 CPU cores, so this traces the whole
MURAL program abstractly (`jax.eval_shape`: init, and one chunk of collect, meta-NML training,
rewards, SAC updates and evaluation) for every task, and the oracle rewards for every task.
The point mazes train for real in test_train.py; `ant_u_maze` is `ant_maze`'s class with
another table.
"""

from __future__ import annotations

import jax
import pytest

from mural_jax.envs import list_envs
from mural_jax.train import make_train
from tests.test_train import tiny

POINT_MAZES = {"zigzag_maze", "spiral_maze", "spiral_maze_original"}
TASKS = [n for n in list_envs() if n not in POINT_MAZES and n != "ant_u_maze"]


@pytest.mark.parametrize("env", TASKS)
def test_task_training_program_traces(env):
    cfg = tiny(env=env, method="mural", episode_length=10, num_success_examples=8)
    trainer = make_train(cfg)
    task = trainer.task
    state = jax.eval_shape(trainer.init, jax.random.PRNGKey(0))
    assert state.env.obs.shape == (cfg.num_envs, task.observation_size)
    assert state.success_examples.shape == (8, task.observation_size)
    new_state, metrics = jax.eval_shape(trainer.run_chunk, state)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert metrics["eval/success_rate"].shape == () and "reward/meta_loss" in metrics
    # The other methods differ only in the reward: the task's oracles, batched.
    obs = state.env.obs
    assert jax.eval_shape(task.dense_reward, obs, obs).shape == (cfg.num_envs,)
    assert jax.eval_shape(task.sparse_reward, obs, obs).shape == (cfg.num_envs,)
