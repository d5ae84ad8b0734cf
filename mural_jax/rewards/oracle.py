"""Oracle rewards from the task itself: the sparse success indicator and the shaped reward."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from mural_jax.envs.base import Task


@dataclasses.dataclass(frozen=True)
class OracleReward:
    """`kind` picks the task's `sparse_reward` or `dense_reward`; nothing is learned."""

    task: Task
    kind: str
    learned: bool = False

    def init(self, rng: jax.Array, success_examples: jax.Array):
        del rng, success_examples
        return jnp.zeros(())

    def update(self, state, replay, rng, epochs):
        del replay, rng, epochs
        return state, {}

    def reward(self, state, obs, next_obs, rng):
        del state, rng
        fn = self.task.sparse_reward if self.kind == "sparse" else self.task.dense_reward
        return fn(obs, next_obs)
