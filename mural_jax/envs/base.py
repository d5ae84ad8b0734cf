"""What a MURAL task adds to a Brax `Env`: success examples, success test, oracle rewards.

The trainer only ever talks to this interface, so a new task (a maze table, a Brax robot, a
user's own environment) plugs in without touching the learner.
"""

from __future__ import annotations

import abc

import jax
import jax.numpy as jnp
from brax.envs.base import Env


class Task(Env, abc.ABC):
    """A Brax environment plus everything learning-from-success-examples needs.

    Subclasses implement the Brax API (`reset`, `step`, `observation_size`, `action_size`) and
    the methods below. Observations are flat vectors.
    """

    #: Episode length (time-limit truncation, which bootstraps).
    episode_length: int = 1000
    #: Columns of the observation the success classifier sees (the original picked keys per task).
    classifier_obs: tuple[int, int] | None = None
    #: False for tasks known only by success examples: evaluation then reports the distance to
    #: the nearest success example and the learned reward instead of a success rate.
    has_success_fn: bool = True

    @abc.abstractmethod
    def success_examples(self, rng: jax.Array, n: int) -> jax.Array:
        """`n` observations of successful outcomes, generated as in the paper; shape (n, obs)."""

    @abc.abstractmethod
    def is_success(self, obs: jax.Array) -> jax.Array:
        """Boolean success test for observations of shape (..., obs)."""

    @abc.abstractmethod
    def goal_distance(self, obs: jax.Array) -> jax.Array:
        """The task's reported distance to the goal (e.g. final distance), shape (...)."""

    def sparse_reward(self, obs: jax.Array, next_obs: jax.Array) -> jax.Array:
        """1 when the next state is a success, else 0."""
        del obs
        return self.is_success(next_obs).astype(jnp.float32)

    @abc.abstractmethod
    def dense_reward(self, obs: jax.Array, next_obs: jax.Array) -> jax.Array:
        """An honestly shaped oracle reward (the paper's hand-engineered baseline)."""

    def eval_metrics(self, final_obs: jax.Array) -> dict[str, jax.Array]:
        """Task-specific figures of evaluation episodes' final states, averaged over episodes
        (e.g. a stricter success radius); logged as `eval/NAME`."""
        del final_obs
        return {}

    def classifier_features(self, obs: jax.Array) -> jax.Array:
        """The slice of the observation that the success classifier sees."""
        if self.classifier_obs is None:
            return obs
        lo, hi = self.classifier_obs
        return obs[..., lo:hi]

    @property
    def backend(self) -> str:
        return "jax"
