"""VICE baseline: the same classifier trained plainly (success examples vs visited states).

The reward is p(success | s) (or its log) of the plain classifier: no CNML, so no optimism
about unvisited states. Retrained on the same schedule as meta-NML.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
import optax

from mural_jax import replay as replay_lib
from mural_jax.config import ClassifierConfig
from mural_jax.envs.base import Task
from mural_jax.rewards import classifier


@flax.struct.dataclass
class ViceState:
    params: list
    opt_state: optax.OptState
    success_features: jax.Array


@dataclasses.dataclass(frozen=True)
class Vice:
    """VICE's reward: the plain classifier's p(1|s) (or log), retrained on the RL schedule."""

    task: Task
    config: ClassifierConfig
    learned: bool = True

    @property
    def optimizer(self) -> optax.GradientTransformation:
        return optax.adam(self.config.learning_rate)

    def init(self, rng, success_examples) -> ViceState:
        feats = self.task.classifier_features(success_examples)
        params = classifier.init(rng, feats.shape[-1], self.config.hidden)
        return ViceState(params, self.optimizer.init(params), feats)

    def reward(self, state, obs, next_obs, rng):
        del obs, rng
        logp = jax.nn.log_softmax(
            classifier.logits(state.params, self.task.classifier_features(next_obs))
        )[..., 1]
        return logp if self.config.reward_type == "log_prob" else jnp.exp(logp)

    def _step(self, state: ViceState, replay, rng):
        """One Adam step on a balanced batch: half success examples (1), half replay (0)."""
        half = self.config.batch_size // 2
        k_neg, k_pos = jax.random.split(rng)
        neg = self.task.classifier_features(replay_lib.sample_obs(replay, k_neg, half))
        feats = state.success_features
        pos = feats[jax.random.randint(k_pos, (half,), 0, feats.shape[0])]
        x = jnp.concatenate([neg, pos])
        y = jnp.concatenate([jnp.zeros((half,), jnp.int32), jnp.ones((half,), jnp.int32)])
        loss, grads = jax.value_and_grad(classifier.weighted_xent)(
            state.params, x, y, jnp.ones((2 * half,))
        )
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        return state.replace(
            params=optax.apply_updates(state.params, updates), opt_state=opt_state
        ), loss

    def update(self, state, replay, rng, epochs):
        """`epochs` x steps_per_epoch Adam steps (epochs is traced: usually 0). The reported
        classifier_loss is the mean over the steps run (NaN when none ran)."""
        steps = epochs * self.config.steps_per_epoch

        def body(i, carry):
            s, total = carry
            s, loss = self._step(s, replay, jax.random.fold_in(rng, i))
            return s, total + loss

        state, total = jax.lax.fori_loop(0, steps, body, (state, jnp.zeros((), jnp.float32)))
        loss = jnp.where(steps > 0, total / jnp.maximum(steps, 1), jnp.nan)
        return state, {"classifier_loss": loss}
