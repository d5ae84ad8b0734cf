"""The training loop: collect with the policy, learn rewards, update SAC, all in one `lax.scan`.

`make_train(config)` returns a `Trainer` of pure functions over one `TrainState` pytree:
`init(rng)`, `run_chunk(state)` (eval_every env steps of collect + reward learning + SAC
updates, then an evaluation; compiled once) and `train(rng)` (the whole run as one pure
function, vmappable over seeds). Host code (logging, progress) only runs between chunks.

    python -m mural_jax.train --env zigzag_maze --method dense --steps 100000 --seed 0 --out DIR
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
from brax.envs.base import State as EnvState
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mural_jax import config as config_lib
from mural_jax import replay as replay_lib
from mural_jax import sharding as sharding_lib
from mural_jax.config import TrainConfig
from mural_jax.envs import TaskError, is_custom_spec, make_env
from mural_jax.envs.base import Task
from mural_jax.rewards import RewardMethod, make_reward
from mural_jax.sac import SAC, SACState


@flax.struct.dataclass
class TrainState:
    """Everything that changes during a run: checkpoint it, shard it, vmap it over seeds."""

    sac: SACState
    reward: Any  # the reward method's state (classifier, meta-NML, ...)
    replay: replay_lib.ReplayBuffer
    env: EnvState  # batched over num_envs
    episode_step: jax.Array  # (num_envs,) steps into the current episode
    success_examples: jax.Array
    rng: jax.Array
    env_steps: jax.Array  # total transitions collected (all envs)


_TRAIN_KEYS = (
    "critic_loss",
    "actor_loss",
    "alpha_loss",
    "alpha",
    "entropy",
    "q_mean",
    "target_mean",
    "reward_mean",
)

#: fold_in data for the relabelling key (the retraining's own key is left as it was).
_RELABEL_STREAM = 0x4E1A


def _compute_if(flag: jax.Array, fn, inputs: tuple, otherwise: jax.Array) -> jax.Array:
    """fn(*inputs) where `flag`, else `otherwise`, paying for fn only where it runs.

    A loop of zero or one trip, not `lax.cond`: under a vmap over seeds cond computes both
    branches (see replay.relabel). The barrier ties the inputs to the loop index: XLA hoists
    what a loop body computes from loop invariants out of the loop, where it runs every time
    (measured: the relabelled quickstart ran ~30% slower).
    """

    def once(i, _):
        return fn(*jax.lax.optimization_barrier((i, inputs))[1])

    return jax.lax.fori_loop(0, flag.astype(jnp.int32), once, otherwise)


# Quantities checked for NaN/inf inside the scan (the first bad env step is reported).
_WATCHED = ("critic_loss", "actor_loss", "alpha_loss", "reward_mean", "meta_loss",
            "classifier_loss")  # fmt: skip


def faults(metrics: dict[str, float]) -> dict[str, int]:
    """{quantity: first env step where it was NaN/inf} from a chunk's metrics."""
    return {k[6:]: int(v) for k, v in metrics.items() if k.startswith("fault/") and v >= 0}


@dataclasses.dataclass(frozen=True)
class Trainer:
    config: TrainConfig
    task: Task
    agent: SAC
    method: RewardMethod
    #: A `data` mesh to split envs, replay and batches over (None: whatever jit decides).
    mesh: Mesh | None = None

    # -- sizes ---------------------------------------------------------------------------

    @property
    def horizon(self) -> int:
        return self.config.episode_length or self.task.episode_length

    @property
    def iterations_per_chunk(self) -> int:
        return self.config.eval_every // self.config.num_envs

    @property
    def num_chunks(self) -> int:
        return self.config.steps // self.config.eval_every

    @property
    def relabel_until(self) -> int | None:
        """With relabel_rewards: the env step from which sampled batches get fresh rewards,
        because relabelling the replay would cost more (None: never, for any run length).

        A retraining period of `update_every` env steps queries `fresh` rewards when every
        sampled transition and step is rewarded, and relabelling costs `relabel_draws`
        queries per stored row and per collected transition (after the switch collected
        transitions are not rewarded: nothing reads their stored reward). Rows only grow (up
        to the capacity), so the switch is once: on one device, at the first retraining whose
        replay holds at least `fresh / relabel_draws - update_every` rows, i.e. after
        k = ceil(per_iteration / (num_envs * relabel_draws)) - 1 periods (at least 1).

        On a mesh of D data devices it compares device time: fresh queries and collected
        rows split over the devices, but each device relabels its own block of rows, so while
        the replay fills the first block that device relabels them all. The switch then
        comes after k = ceil((per_iteration / (num_envs * relabel_draws) - 1) / D) periods
        (D times fewer rows); "never" is the same test on either (a full replay's blocks cost
        1/D each). Integers throughout, so no rounding moves it. It is a multiple of
        `update_every`, fixed by the config and the mesh, so a vmap over seeds and a resumed
        run on the same devices switch where an uninterrupted run does.
        """
        cfg = self.config
        if not cfg.relabel_rewards:
            return None
        every = cfg.classifier.update_every
        per_iteration = cfg.updates_per_iteration * cfg.sac.batch_size * cfg.sac.n_step
        per_row = cfg.num_envs * cfg.relabel_draws  # fresh / every = per_iteration / per_row
        if (cfg.replay_capacity + every) * per_row < every * per_iteration:
            return None  # relabelling even a full replay costs less
        groups = 1 if self.mesh is None else self.mesh.shape[sharding_lib.DATA]
        return max(1, -(-(per_iteration - per_row) // (per_row * groups))) * every

    def _stored_reward(self, reward_state, obs, next_obs, rng):
        """A stored (collected or relabelled) reward: the mean over `relabel_draws` draws."""
        draws = self.config.relabel_draws
        if draws == 1:
            return self.method.reward(reward_state, obs, next_obs, rng)
        keys = jax.random.split(rng, draws)
        one = lambda k: self.method.reward(reward_state, obs, next_obs, k)
        return jax.lax.map(one, keys).mean(0)

    # -- state ---------------------------------------------------------------------------

    def init(self, rng: jax.Array) -> TrainState:
        cfg = self.config
        k_sac, k_rew, k_ex, k_env, rng = jax.random.split(rng, 5)
        examples = self.task.success_examples(k_ex, cfg.num_success_examples)
        env_state = jax.vmap(self.task.reset)(jax.random.split(k_env, cfg.num_envs))
        return TrainState(
            sac=self.agent.init(k_sac),
            reward=self.method.init(k_rew, examples),
            replay=replay_lib.init(
                cfg.replay_capacity, self.agent.obs_size, self.agent.action_size
            ),
            env=env_state,
            episode_step=jnp.zeros((cfg.num_envs,), jnp.int32),
            success_examples=examples,
            rng=rng,
            env_steps=jnp.zeros((), jnp.int32),
        )

    # -- one iteration: every env steps once, then rewards are learned and SAC updated ------

    def _collect(self, state: TrainState, rng: jax.Array):
        cfg, n = self.config, self.config.num_envs
        k_act, k_rand, k_rew, k_reset = jax.random.split(rng, 4)
        obs = state.env.obs
        random_phase = state.env_steps < cfg.random_steps
        uniform = jax.random.uniform(k_rand, (n, self.agent.action_size), minval=-1, maxval=1)
        action = jnp.where(random_phase, uniform, self.agent.act(state.sac, obs, k_act))
        nxt = jax.vmap(self.task.step)(state.env, action)
        episode_step = state.episode_step + 1
        # Brax's EpisodeWrapper marks time-limit ends in info["truncation"]: those bootstrap.
        brax_truncation = nxt.info.get("truncation", jnp.zeros_like(nxt.done))
        terminated = (nxt.done * (1.0 - brax_truncation)).astype(jnp.float32)
        truncated = (
            ((episode_step >= self.horizon) | (brax_truncation > 0)) & (terminated == 0)
        ).astype(jnp.float32)
        if cfg.reward_at_collection and self.relabel_until is None:
            reward = self._stored_reward(state.reward, obs, nxt.obs, k_rew)
        elif cfg.reward_at_collection:  # from the switch on no one reads a stored reward
            read = state.env_steps + n < self.relabel_until
            inputs = (state.reward, obs, nxt.obs, k_rew)
            reward = _compute_if(read, self._stored_reward, inputs, jnp.zeros((n,), jnp.float32))
        else:
            reward = nxt.reward
        transition = replay_lib.Transition(
            obs=obs,
            action=action,
            reward=reward,
            next_obs=nxt.obs,  # the real final observation, also at episode ends
            terminated=terminated,
            truncated=truncated,
        )
        ended = (terminated + truncated) > 0

        def reset(_):
            fresh = jax.vmap(self.task.reset)(jax.random.split(k_reset, n))
            pick = lambda a, b: jnp.where(ended.reshape(-1, *([1] * (a.ndim - 1))), a, b)
            return jax.tree.map(pick, fresh, nxt)

        env_state = jax.lax.cond(jnp.any(ended), reset, lambda _: nxt, None)
        if self.task.has_success_fn:
            success = self.task.is_success(nxt.obs).astype(jnp.float32)
        else:
            success = jnp.zeros((n,), jnp.float32)
        finite = [jnp.isfinite(x).all() for x in (transition.obs, action, reward, nxt.obs)]
        episode_stats = {
            "episodes": ended.sum().astype(jnp.float32),
            "episode_success": (success * ended).sum(),
            # NaN physics would poison the replay (and the next checkpoint) long before a loss
            # shows it: the collected transitions are watched too.
            "finite": jnp.stack(finite).all(),
        }
        state = state.replace(
            replay=replay_lib.insert(state.replay, transition),
            env=env_state,
            episode_step=jnp.where(ended, 0, episode_step),
            env_steps=state.env_steps + n,
        )
        return state, episode_stats

    def _learn_reward(self, state: TrainState, rng: jax.Array):
        """Retrain the reward: initial epochs once random steps are done, then on a schedule."""
        cfg, ccfg = self.config, self.config.classifier
        if not self.method.learned:
            return state, {}, jnp.zeros((), jnp.int32)
        before = state.env_steps - cfg.num_envs
        start = max(cfg.random_steps, cfg.num_envs)
        first = (before < start) & (state.env_steps >= start)
        crossed = (state.env_steps // ccfg.update_every) > (before // ccfg.update_every)
        scheduled = crossed & (before >= start)
        epochs = jnp.where(
            first, ccfg.initial_epochs, jnp.where(scheduled, ccfg.epochs_per_update, 0)
        )
        reward_state, info = self.method.update(state.reward, state.replay, rng, epochs)
        replay = state.replay
        if cfg.relabel_rewards:  # stored rewards follow every retraining (see the config)
            reward_fn = lambda o, n, k: self._stored_reward(reward_state, o, n, k)
            key = jax.random.fold_in(rng, _RELABEL_STREAM)
            groups = 1 if self.mesh is None else self.mesh.shape[sharding_lib.DATA]
            chunk = max(1, cfg.relabel_chunk // groups)  # one block of rows per device
            active = epochs > 0
            if self.relabel_until is not None:  # from then on rewards are fresh instead
                active = active & (state.env_steps < self.relabel_until)
            replay = replay_lib.relabel(replay, reward_fn, key, chunk, groups, active=active)
        return state.replace(reward=reward_state, replay=replay), info, epochs

    def _sac_updates(self, state: TrainState, rng: jax.Array):
        """The iteration's SAC updates. The reward state is fixed within an iteration, so all
        its batches are sampled and rewarded in one call (one large vmapped reward batch)."""
        cfg = self.config
        n_updates, batch_size = cfg.updates_per_iteration, cfg.sac.batch_size

        def one_update(sac_state, xs):
            batch, rewards, discount, key = xs  # discount None: the one-step target
            return self.agent.update(sac_state, batch, rewards, key, discount)

        def rewarded(reward_state, k_rew, obs, next_obs):  # leaves (n_updates, batch, obs_size)
            return jax.vmap(self.method.reward, in_axes=(None, 0, 0, 0))(
                reward_state, obs, next_obs, jax.random.split(k_rew, n_updates)
            )

        def run(_):
            k_batch, k_rew, k_upd = jax.random.split(rng, 3)
            batch_keys = jax.random.split(k_batch, n_updates)
            n_step = cfg.sac.n_step
            if n_step == 1:
                batches = jax.vmap(lambda k: replay_lib.sample(state.replay, k, batch_size))(
                    batch_keys
                )
            else:  # each of an env's next n - 1 transitions, for n-step targets
                batches, masks = jax.vmap(
                    lambda k: replay_lib.sample_sequences(
                        state.replay, k, batch_size, n_step, cfg.num_envs
                    )
                )(batch_keys)
            if self.mesh is not None:  # split every batch (and its meta-NML queries) over data
                spec = NamedSharding(self.mesh, P(None, sharding_lib.DATA))
                batches = jax.lax.with_sharding_constraint(batches, spec)

            def fresh_rewards(reward_state, obs, next_obs, key):
                if n_step == 1:  # vmapped over the updates: one call, batch axis kept sharded
                    return rewarded(reward_state, key, obs, next_obs)
                # every step of every sequence in the same single call
                flat = lambda x: x.reshape(n_updates, batch_size * n_step, -1)
                rewards = rewarded(reward_state, key, flat(obs), flat(next_obs))
                return rewards.reshape(n_updates, batch_size, n_step)

            if not cfg.reward_at_collection:
                rewards = fresh_rewards(state.reward, batches.obs, batches.next_obs, k_rew)
            elif self.relabel_until is None:
                rewards = batches.reward
            else:  # relabelled stored rewards until relabel_until, fresh ones from then on
                inputs = (state.reward, batches.obs, batches.next_obs, k_rew)
                fresh = state.env_steps >= self.relabel_until
                rewards = _compute_if(fresh, fresh_rewards, inputs, batches.reward)
            discounts = None
            if n_step > 1:  # the logged reward_mean stays a per-step mean, not the n-step sum
                valid = jnp.where(masks > 0, rewards, 0.0)
                step_reward_mean = cfg.sac.reward_scale * valid.sum() / masks.sum()
                batches, discounts = jax.vmap(replay_lib.n_step_batch, in_axes=(0, 0, 0, None))(
                    batches, rewards, masks, cfg.sac.gamma
                )
                rewards = batches.reward
            keys = jax.random.split(k_upd, n_updates)
            sac_state, metrics = jax.lax.scan(
                one_update, state.sac, (batches, rewards, discounts, keys)
            )
            metrics = {k: metrics[k].mean() for k in _TRAIN_KEYS}
            if n_step > 1:
                metrics["reward_mean"] = step_reward_mean
            return sac_state, metrics, jnp.ones(())

        def skip(_):
            return state.sac, {k: jnp.zeros(()) for k in _TRAIN_KEYS}, jnp.zeros(())

        ready = state.env_steps >= max(cfg.random_steps, cfg.sac.batch_size)
        sac_state, metrics, did = jax.lax.cond(ready, run, skip, None)
        return state.replace(sac=sac_state), metrics, did

    def _iteration(self, carry, _):
        state, sums = carry
        rng, k_collect, k_reward, k_sac = jax.random.split(state.rng, 4)
        state = state.replace(rng=rng)
        state, ep = self._collect(state, k_collect)
        state, reward_info, epochs = self._learn_reward(state, k_reward)
        state, metrics, did = self._sac_updates(state, k_sac)
        # Running sums (scalars): nothing per-step accumulates over a chunk.
        new = dict(sums)
        for k, v in metrics.items():
            new["train/" + k] = sums["train/" + k] + v
        new["train/updated_iterations"] = sums["train/updated_iterations"] + did
        new["train/episodes"] = sums["train/episodes"] + ep["episodes"]
        new["train/episode_success"] = sums["train/episode_success"] + ep["episode_success"]
        first = sums["fault/transition"]
        new["fault/transition"] = jnp.where(
            ~ep["finite"] & (first < 0), state.env_steps.astype(jnp.float32), first
        )
        for k, v in reward_info.items():  # latest value from an iteration that retrained
            new["reward/" + k] = jnp.where(epochs > 0, v, sums["reward/" + k])
        # NaN/inf guard: remember the first env step at which each quantity went non-finite.
        # Reward-learning losses count only on iterations that retrained (NaN otherwise).
        for k in _WATCHED:
            if k in metrics or k in reward_info:
                v = metrics[k] if k in metrics else reward_info[k]
                first = sums["fault/" + k]
                bad = ~jnp.isfinite(v) & (first < 0) & ((epochs > 0) | (k in metrics))
                new["fault/" + k] = jnp.where(bad, state.env_steps.astype(jnp.float32), first)
        return (state, new), None

    def _empty_sums(self) -> dict[str, jax.Array]:
        keys = [f"train/{k}" for k in _TRAIN_KEYS]
        keys += ["train/updated_iterations", "train/episodes", "train/episode_success"]
        sums = {k: jnp.zeros(()) for k in keys}
        sums.update({"fault/" + k: -jnp.ones(()) for k in _WATCHED if k in _TRAIN_KEYS})
        sums["fault/transition"] = -jnp.ones(())  # a collected obs, action or reward
        if self.method.learned:
            probe = jax.eval_shape(
                lambda s: self.method.update(s.reward, s.replay, s.rng, jnp.zeros((), jnp.int32)),
                jax.eval_shape(self.init, jax.random.PRNGKey(0)),
            )[1]
            sums.update(
                {"reward/" + k: jnp.full(v.shape, jnp.nan, v.dtype) for k, v in probe.items()}
            )
            sums.update({"fault/" + k: -jnp.ones(()) for k in _WATCHED if k in probe})
        return sums

    def run_chunk(self, state: TrainState) -> tuple[TrainState, dict[str, jax.Array]]:
        """`eval_every` env steps of training, then an evaluation. Returns scalar metrics."""
        (state, sums), _ = jax.lax.scan(
            self._iteration, (state, self._empty_sums()), None, length=self.iterations_per_chunk
        )
        n_updated = jnp.maximum(sums.pop("train/updated_iterations"), 1.0)
        episodes = sums.pop("train/episodes")
        episode_success = sums.pop("train/episode_success")
        metrics = {k: (v / n_updated if k.startswith("train/") else v) for k, v in sums.items()}
        metrics["train/episode_success_rate"] = episode_success / jnp.maximum(episodes, 1.0)
        rng, k_eval = jax.random.split(state.rng)
        state = state.replace(rng=rng)
        metrics.update(self.evaluate(state, k_eval))
        metrics["env_steps"] = state.env_steps
        return state, metrics

    def evaluate(self, state: TrainState, rng: jax.Array) -> dict[str, jax.Array]:
        """Deterministic policy for `eval_episodes` parallel episodes of the full horizon."""
        n = self.config.eval_episodes
        env0 = jax.vmap(self.task.reset)(jax.random.split(rng, n))

        has_success = self.task.has_success_fn
        success = self.task.is_success if has_success else (lambda o: jnp.zeros(o.shape[0], bool))

        def step(carry, _):
            env, final_obs, alive, ever = carry
            action = self.agent.act(state.sac, env.obs, None)
            env = jax.vmap(self.task.step)(env, action)
            # An episode's final state is where it terminated, or the state at the horizon.
            final_obs = jnp.where(alive[:, None], env.obs, final_obs)
            ever = ever | (alive & success(env.obs))
            return (env, final_obs, alive & (env.done == 0), ever), None

        init = (env0, env0.obs, jnp.ones((n,), bool), jnp.zeros((n,), bool))
        (_, final_obs, _, ever), _ = jax.lax.scan(step, init, None, length=self.horizon)
        final = final_obs
        nan = jnp.full((), jnp.nan)
        out = {
            "eval/success_rate": success(final).astype(jnp.float32).mean() if has_success else nan,
            # Without a success function: distance to the nearest success example.
            "eval/final_distance": self.task.goal_distance(final).mean(),
            "eval/ever_success_rate": ever.astype(jnp.float32).mean() if has_success else nan,
        }
        for k, v in self.task.eval_metrics(final).items():
            out["eval/" + k] = v
        if self.method.learned:
            # Keys n and n + 1 of rng's stream: split(rng, n)[i] is fold_in(rng, i), so these
            # are disjoint from the n reset keys above (split(rng) would repeat the first two).
            k_final, k_examples = jax.random.fold_in(rng, n), jax.random.fold_in(rng, n + 1)
            r = self.method.reward(state.reward, final, final, k_final)
            out["eval/learned_reward"] = r.mean()
            # The reward at the success examples themselves: a reward that has faded at the
            # goal (docs/results.md) shows here long before it shows in the success rate.
            examples = state.success_examples[:n]
            r_ex = self.method.reward(state.reward, examples, examples, k_examples)
            out["eval/success_example_reward"] = r_ex.mean()
        return out

    def compiled(self):
        """(init, run_chunk) jitted for this trainer's mesh, and the state's shardings."""
        if self.mesh is None:
            return jax.jit(self.init), jax.jit(self.run_chunk, donate_argnums=0), None
        abstract = jax.eval_shape(self.init, jax.random.PRNGKey(0))
        shardings = sharding_lib.state_shardings(abstract, self.mesh)
        replicated = NamedSharding(self.mesh, P())
        init = jax.jit(self.init, out_shardings=shardings)
        run_chunk = jax.jit(
            self.run_chunk,
            in_shardings=(shardings,),
            out_shardings=(shardings, replicated),
            donate_argnums=0,
        )
        return init, run_chunk, shardings

    def compiled_seeds(self, num_seeds: int):
        """(init, run_chunk) vmapped over `num_seeds` seeds and jitted. On a (`seed`, `data`)
        mesh the seeds are split over `seed` and each seed's envs, replay and batches over
        `data` (`spmd_axis_name` gives the vmapped axis its mesh axis inside the chunk)."""
        mesh = self.mesh
        if mesh is None or sharding_lib.SEED not in mesh.axis_names:
            init = jax.jit(jax.vmap(self.init))
            return init, jax.jit(jax.vmap(self.run_chunk), donate_argnums=0)
        if num_seeds % mesh.shape[sharding_lib.SEED]:
            raise ValueError(
                f"seeds={num_seeds} is invalid on {mesh.shape[sharding_lib.SEED]} seed device "
                f"groups; allowed: a multiple of {mesh.shape[sharding_lib.SEED]}"
            )
        init_v = jax.vmap(self.init, spmd_axis_name=sharding_lib.SEED)
        run_v = jax.vmap(self.run_chunk, spmd_axis_name=sharding_lib.SEED)
        keys = jax.ShapeDtypeStruct((num_seeds, 2), jnp.uint32)
        shardings = sharding_lib.seed_state_shardings(jax.eval_shape(init_v, keys), mesh)
        by_seed = NamedSharding(mesh, P(sharding_lib.SEED))
        init = jax.jit(init_v, in_shardings=by_seed, out_shardings=shardings)
        run_chunk = jax.jit(
            run_v, in_shardings=(shardings,), out_shardings=(shardings, by_seed), donate_argnums=0
        )
        return init, run_chunk

    def train(self, rng: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
        """The whole run as one pure function (jit it, vmap it over seeds)."""
        state = self.init(rng)
        return jax.lax.scan(lambda s, _: self.run_chunk(s), state, None, length=self.num_chunks)


def make_train(config: TrainConfig, mesh: Mesh | None = None) -> Trainer:
    """Validate the config and build the task, the SAC agent and the reward method.

    With a `mesh`, envs, replay buffer and batches are split over its `data` axis.
    """
    config.validate()
    if mesh is not None:
        try:
            sharding_lib.check_divisible(
                mesh,
                num_envs=config.num_envs,
                replay_capacity=config.replay_capacity,
                **{"sac.batch_size": config.sac.batch_size},
            )
        except ValueError as e:
            raise config_lib.ConfigError(str(e)) from None
    if is_custom_spec(config.env):
        try:
            task = make_env(
                config.env,
                success_examples=config.success_examples,
                classifier_obs=config.classifier_obs,
                episode_length=config.episode_length,
            )
        except TaskError as e:
            raise config_lib.ConfigError(str(e)) from None
    else:
        task = make_env(config.env)
    if not task.has_success_fn and config.method in ("sparse", "dense"):
        raise config_lib.ConfigError(
            f"method={config.method!r} is invalid for env={config.env!r}, which has no success "
            "function or oracle reward; allowed: vice | mural"
        )
    if not isinstance(task.observation_size, int):
        raise config_lib.ConfigError(
            f"env={config.env!r} has observation_size {task.observation_size!r}; "
            "allowed: a flat observation (an int size)"
        )
    agent = SAC(config.sac, task.observation_size, task.action_size)
    return Trainer(config, task, agent, make_reward(config, task), mesh)


# -- Command line -------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """The validated config that these command-line arguments describe."""
    return _parse(argv)[0]


def _parse(argv: list[str] | None) -> tuple[TrainConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="python -m mural_jax.train",
        description="Train SAC with a sparse, dense, VICE or MURAL reward on a registered task.",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="base config: a name in experiments/configs/ (e.g. quickstart) or a JSON path; "
        "flags override it",
    )
    parser.add_argument(
        "--resume",
        default=None,
        metavar="DIR",
        help="continue the run in DIR from its latest checkpoint (flags may only change steps, "
        "devices, checkpoint_keep and the wandb options)",
    )
    parser.add_argument(
        "--resume-step",
        type=int,
        default=None,
        metavar="STEP",
        help="with --resume: continue from this kept checkpoint instead of the latest (e.g. when "
        "the latest is damaged); newer ones are moved to DIR/checkpoints_superseded",
    )
    config_lib.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.resume_step is not None and not args.resume:
        raise config_lib.ConfigError(
            f"resume_step={args.resume_step} is invalid without --resume; allowed: "
            "--resume DIR --resume-step STEP"
        )
    if args.resume and args.config:
        raise config_lib.ConfigError(
            f"config={args.config!r} is invalid with --resume; allowed: none (a resumed run "
            "keeps its own config.json)"
        )
    if args.resume:
        saved = os.path.join(args.resume, "config.json")
        if not os.path.exists(saved):
            raise config_lib.ConfigError(f"resume={args.resume!r} holds no run (no config.json)")
        base = config_lib.load_json(TrainConfig, saved)
    else:
        base = config_lib.load_experiment(args.config) if args.config else TrainConfig()
    overrides = config_lib.overrides_from_args(args)
    if args.resume:
        overrides["out"] = args.resume
    cfg = config_lib.replace(base, overrides)
    return cfg.validate(), args


def main(argv: list[str] | None = None) -> str:
    from mural_jax import logging as log_lib
    from mural_jax.checkpoint import Checkpointer, CheckpointError

    try:
        sharding_lib.initialize_distributed()  # multi-host jobs only (env variables)
    except config_lib.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    lead = jax.process_index() == 0  # only process 0 writes logs and prints
    try:
        cfg, args = _parse(argv)
        if cfg.wandb:
            import importlib.util

            if importlib.util.find_spec("wandb") is None:
                raise config_lib.ConfigError(
                    "wandb=True is invalid here: the wandb package is not installed "
                    "(pip install wandb), or drop --wandb"
                )
        mesh = sharding_lib.make_mesh(cfg.devices)
        trainer = make_train(cfg, mesh)
        init, run_chunk, shardings = trainer.compiled()
        if jax.process_count() > 1 and not cfg.out:
            raise config_lib.ConfigError(
                "out=None is invalid for a multi-process run; allowed: a --out folder that "
                "every host can reach (shared storage)"
            )
        if args.resume:
            out = args.resume
        elif lead:
            out = log_lib.prepare_run_dir(cfg)
        else:
            out = cfg.out
        ckpt = Checkpointer(
            os.path.join(out, "checkpoints"), cfg.checkpoint_keep, cfg.checkpoint_replay
        )
        if args.resume:  # restored onto this run's devices (resharded if the count changed)
            abstract = jax.eval_shape(trainer.init, jax.random.PRNGKey(cfg.seed))
            step = args.resume_step
            if step is not None and step not in ckpt.all_steps():
                raise config_lib.ConfigError(
                    f"resume_step={step} is invalid for {out}; allowed: a kept checkpoint, one "
                    f"of {ckpt.all_steps()}"
                )
            state = ckpt.restore(sharding_lib.with_shardings(abstract, shardings), cfg, step)
            if int(state.env_steps) >= cfg.steps:
                raise config_lib.ConfigError(
                    f"steps={cfg.steps} is invalid for resuming {out}: its checkpoint is at "
                    f"env step {int(state.env_steps)}; allowed: more steps (--steps N)"
                )
            if lead:
                config_lib.save_json(cfg, os.path.join(out, "config.json"))  # e.g. more steps
                if step is not None:  # the steps after it belong to the abandoned run
                    for path in ckpt.set_aside_after(step):
                        print(f"  set aside {path}")
            if step is not None and jax.process_count() > 1:  # every host sees the move
                from jax.experimental import multihost_utils

                multihost_utils.sync_global_devices("mural_jax resume_step")
                ckpt.reload()
    except (config_lib.ConfigError, CheckpointError, FileExistsError, TaskError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if lead:
        log_lib.record_machine(out)  # one line per start or resume: where the numbers came from
    say = print if lead else (lambda *a, **k: None)  # workers stay silent
    say(f"mural_jax: env={cfg.env} method={cfg.method} steps={cfg.steps} seed={cfg.seed}")
    n_dev = mesh.shape[sharding_lib.DATA]
    say(f"  devices: {n_dev} x {jax.devices()[0].device_kind} (data axis)  output={out}")
    if trainer.relabel_until is not None:
        say(
            f"  rewards: stored and relabelled after each retraining until env step "
            f"{trainer.relabel_until}, then fresh on every sampled batch (fewer queries from there)"
        )
    if not trainer.task.has_success_fn:
        say(
            "  note: this task has no success function: eval/final_distance is the distance to "
            "the nearest success example, and eval/learned_reward the learned reward of the "
            "final states (eval/success_rate is NaN)"
        )
    t0 = time.time()
    if args.resume:
        start = int(state.env_steps) // cfg.eval_every
        say(f"  resumed from {out} at env step {int(state.env_steps)}")
    else:
        state, start = init(jax.random.PRNGKey(cfg.seed)), 0
    logger = log_lib.MetricsLogger(
        out,
        resume_at=start * cfg.eval_every if args.resume else None,
        wandb_run=log_lib.start_wandb(cfg, out) if cfg.wandb and lead else None,
    )
    if not lead:
        logger = log_lib.NullLogger()
    last = time.time()
    for chunk in range(start, trainer.num_chunks):
        state, metrics = run_chunk(state)
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        bad = faults(metrics)
        if bad:
            ckpt.wait()
            where = ", ".join(f"{k} at env step {v}" for k, v in sorted(bad.items()))
            print(
                f"error: non-finite values ({where}); stopping. Last good checkpoint: step "
                f"{ckpt.latest_step()} in {ckpt.directory}",
                file=sys.stderr,
            )
            ckpt.close()
            raise SystemExit(1)
        now = time.time()
        metrics["train/steps_per_second"] = cfg.eval_every / (now - last)
        metrics["time/elapsed_s"] = now - t0
        last = now
        logger.write({k: v for k, v in metrics.items() if not k.startswith("fault/")})
        steps = int(metrics["env_steps"])
        final = chunk == trainer.num_chunks - 1
        every = cfg.checkpoint_every
        if final or (every and steps // every > (steps - cfg.eval_every) // every):
            ckpt.save(steps, state, cfg)
        remaining = (trainer.num_chunks - chunk - 1) * cfg.eval_every
        eta = remaining / metrics["train/steps_per_second"]
        say(log_lib.progress_line(metrics, cfg.steps, eta), flush=True)
    ckpt.wait()
    ckpt.close()
    logger.close()
    say(
        f"done in {time.time() - t0:.0f}s; results in {out} "
        "(config.json, metrics.csv, checkpoints/)"
    )
    return out


if __name__ == "__main__":
    main()
