"""The reward hook: a method turns (obs, next_obs) batches into rewards, maybe learning to.

A method is a value with three pure functions over its own state pytree:
- `init(rng, success_examples)`: the reward state (classifier parameters, optimiser, ...).
- `update(state, replay, rng, epochs)`: retrain from the replay buffer (identity for oracles).
- `reward(state, obs, next_obs, rng)`: rewards for a batch, used on every sampled SAC batch
  (or once at collection). `rng` lets meta-NML draw its random support sets.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax

from mural_jax.replay import ReplayBuffer


class RewardMethod(Protocol):
    #: Whether the reward is learned from success examples (needs retraining on a schedule).
    learned: bool

    def init(self, rng: jax.Array, success_examples: jax.Array) -> Any: ...

    def update(
        self, state: Any, replay: ReplayBuffer, rng: jax.Array, epochs: jax.Array
    ) -> tuple[Any, dict[str, jax.Array]]: ...

    def reward(
        self, state: Any, obs: jax.Array, next_obs: jax.Array, rng: jax.Array
    ) -> jax.Array: ...
