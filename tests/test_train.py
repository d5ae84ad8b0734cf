"""The training loop: episode boundaries, compile-once, SAC learning, MURAL smoke, CLI outputs."""

import csv
import dataclasses
import json
import os
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mural_jax import config as config_lib
from mural_jax.config import ClassifierConfig, MetaNMLConfig, SACConfig, TrainConfig
from mural_jax.train import main, make_train

# Small but real: solves zigzag_maze with the dense oracle in ~30k env steps on 2 CPU cores.
SMALL_SAC = SACConfig(
    hidden=(128, 128), learning_rate=1e-3, gamma=0.95, batch_size=128, init_alpha=0.1
)


def tiny(**kw) -> TrainConfig:
    base = dict(
        env="zigzag_maze",
        method="dense",
        steps=400,
        eval_every=200,
        num_envs=4,
        updates_per_step=0.25,
        random_steps=100,
        replay_capacity=1000,
        eval_episodes=4,
        sac=SACConfig(hidden=(16, 16), batch_size=32),
        classifier=ClassifierConfig(
            hidden=(16, 16), reference_size=64, update_every=100, initial_epochs=2
        ),
        meta_nml=MetaNMLConfig(tasks_per_epoch=4, num_query_points=16, inference_chunk=16),
    )
    base.update(kw)
    return TrainConfig(**base)


def test_episode_boundaries_truncate_and_keep_final_observation():
    trainer = make_train(tiny(steps=800, eval_every=800, random_steps=800))
    state = trainer.init(jax.random.PRNGKey(0))
    state, _ = jax.jit(trainer.run_chunk)(state)
    data = jax.device_get(state.replay.data)
    n, horizon = trainer.config.num_envs, trainer.horizon
    trunc = data.truncated[:800].reshape(-1, n)  # (iterations, envs)
    assert np.all(trunc[horizon - 1 :: horizon] == 1)
    assert trunc.sum() == n * (800 // n // horizon)
    assert np.all(data.terminated[:800] == 0)
    obs = data.obs[:800].reshape(-1, n, 2)
    next_obs = data.next_obs[:800].reshape(-1, n, 2)
    start = np.asarray(trainer.task.layout.start)
    # After a boundary the next transition starts from a reset; the stored next_obs is the real
    # final observation of the ended episode (it moved away from the start during 100 steps).
    np.testing.assert_allclose(obs[horizon], np.broadcast_to(start, (n, 2)))
    assert np.all(np.linalg.norm(next_obs[horizon - 1] - start, axis=-1) > 1e-3)
    # Inside an episode, observations chain: obs[t+1] == next_obs[t].
    np.testing.assert_allclose(obs[1:horizon], next_obs[: horizon - 1])


@pytest.mark.parametrize("n_step", [1, 3])
def test_sac_dense_solves_zigzag_and_traces_once(n_step):
    cfg = TrainConfig(
        env="zigzag_maze",
        method="dense",
        steps=36_000,
        eval_every=3_000,
        num_envs=8,
        updates_per_step=0.5,
        random_steps=1000,
        replay_capacity=100_000,
        eval_episodes=8,
        sac=dataclasses.replace(SMALL_SAC, n_step=n_step),
    )
    trainer = make_train(cfg)
    run_chunk = jax.jit(trainer.run_chunk)
    state = trainer.init(jax.random.PRNGKey(0))
    history = []
    for _ in range(trainer.num_chunks):
        state, metrics = run_chunk(state)
        history.append(float(metrics["eval/success_rate"]))
    assert run_chunk._cache_size() == 1  # compiled once for the whole run
    assert int(state.env_steps) == 36_000
    # Evaluation starts from the fixed start, so each evaluation is solved or not: every one of
    # the last three must be (measured: solved from 12k (one-step) and 21k (three-step) on).
    assert min(history[-3:]) >= 0.8, history


def test_fourier_features_are_fixed_and_the_rest_learns():
    """sac.fourier_features: B is drawn at init, checkpointed as a parameter, never trained."""
    sac = SACConfig(hidden=(16, 16), batch_size=32, fourier_features=8, fourier_scale=0.5)
    trainer = make_train(tiny(sac=sac))
    state0 = trainer.init(jax.random.PRNGKey(0))
    state, _ = jax.jit(trainer.run_chunk)(state0)
    for tree in ("policy_params", "q_params"):
        before = getattr(state0.sac, tree)["params"]
        after = getattr(state.sac, tree)["params"]
        fourier = [k for k in before if k.startswith("FourierFeatures")]
        assert len(fourier) == (1 if tree == "policy_params" else 2)  # one per critic
        for k in fourier:
            assert before[k]["B"].shape == (2, 8)
            np.testing.assert_array_equal(before[k]["B"], after[k]["B"])
            assert 0.3 < float(jnp.std(before[k]["B"])) < 0.8  # ~ N(0, 0.5^2)
        assert not np.allclose(
            before["MLP_0"]["Dense_0"]["kernel"], after["MLP_0"]["Dense_0"]["kernel"]
        )
        # the first layer sees sin and cos of 8 frequencies (plus the action, for a critic)
        assert before["MLP_0"]["Dense_0"]["kernel"].shape[0] == (
            16 if tree == "policy_params" else 18
        )
    q = state.sac.q_params["params"]["FourierFeatures_1"]["B"]
    target = state.sac.target_q_params["params"]["FourierFeatures_1"]["B"]
    np.testing.assert_allclose(target, q, atol=1e-6)
    assert not np.allclose(q, state.sac.q_params["params"]["FourierFeatures_0"]["B"])


def test_mural_end_to_end_smoke_compiled_once():
    cfg = tiny(method="mural", steps=600)
    trainer = make_train(cfg)
    run_chunk = jax.jit(trainer.run_chunk)
    state = trainer.init(jax.random.PRNGKey(1))
    for _ in range(trainer.num_chunks):
        state, metrics = run_chunk(state)
        assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
    assert run_chunk._cache_size() == 1
    # Schedule: initial_epochs once the random steps are in, then one per update_every steps.
    expected = cfg.classifier.initial_epochs + (600 - 100) // cfg.classifier.update_every
    assert int(state.reward.meta_epochs) == expected
    assert 0.0 <= float(metrics["train/reward_mean"]) <= 1.0


@pytest.mark.parametrize("reward_at_collection", [False, True])
def test_n_step_critic_targets_are_the_discounted_sum_of_each_steps_reward(
    reward_at_collection, monkeypatch
):
    """sac.n_step 3: the critic sees sum_k gamma^k r_k over the env's next steps (each step's
    learned reward, fresh or stored) and gamma^m (1 - terminated) for the bootstrap."""
    from mural_jax import replay as replay_lib
    from mural_jax.sac import SAC

    seen = {}
    update = SAC.update

    def spy(self, state, batch, rewards, rng, discount=None):
        if not seen:  # the first update's batch
            seen.update(batch=batch, rewards=rewards, discount=discount)
        return update(self, state, batch, rewards, rng, discount)

    cfg = tiny(
        method="vice",
        steps=200,
        eval_every=200,
        episode_length=10,  # episode ends inside the sampled sequences
        sac=SACConfig(hidden=(16, 16), batch_size=32, gamma=0.9, n_step=3),
        reward_at_collection=reward_at_collection,
    )
    trainer = make_train(cfg)
    state = trainer.init(jax.random.PRNGKey(4))
    state, _ = jax.jit(trainer.run_chunk)(state)  # fills the replay and trains the classifier
    monkeypatch.setattr(SAC, "update", spy)
    rng = jax.random.PRNGKey(5)
    with jax.disable_jit():  # scan and cond run as Python: the spy sees concrete batches
        trainer._sac_updates(state, rng)
    # the same draws, rebuilt by hand from the replay and the reward method
    k_batch, k_rew, _ = jax.random.split(rng, 3)
    k0 = jax.random.split(k_batch, trainer.config.updates_per_iteration)[0]
    seq, mask = replay_lib.sample_sequences(state.replay, k0, 32, 3, cfg.num_envs)
    mask = np.asarray(mask)
    assert 0 < (mask[:, 1:] == 0).sum() < mask[:, 1:].size  # some sequences cut short
    ended = (np.asarray(seq.truncated) + np.asarray(seq.terminated)) > 0
    after_end = (np.cumsum(ended, axis=1) - ended) > 0
    assert after_end.any() and np.all(mask[after_end] == 0)  # ... also by episode ends
    np.testing.assert_array_equal(seen["batch"].obs, seq.obs[:, 0])
    if reward_at_collection:
        r = np.asarray(seq.reward)
    else:
        k0_rew = jax.random.split(k_rew, trainer.config.updates_per_iteration)[0]
        flat = lambda x: x.reshape(32 * 3, -1)
        r = trainer.method.reward(state.reward, flat(seq.obs), flat(seq.next_obs), k0_rew)
        r = np.asarray(r).reshape(32, 3)
    assert r.std() > 0  # learned, not the env's all-zero sparse reward
    for i in range(32):
        m = int(mask[i].sum())
        want = sum(0.9**k * r[i, k] for k in range(m))
        np.testing.assert_allclose(seen["rewards"][i], want, rtol=1e-5, atol=1e-6)
        term = float(seq.terminated[i, m - 1])
        np.testing.assert_allclose(seen["discount"][i], 0.9**m * (1 - term), rtol=1e-6)
        np.testing.assert_array_equal(seen["batch"].next_obs[i], seq.next_obs[i, m - 1])


def test_termination_is_stored_resets_the_env_and_freezes_the_eval_episode(monkeypatch):
    """A task that terminates (here: once the point is 0.25 from its start): terminated rows,
    never also truncated, the env restarting on the next row, and evaluation scoring the
    state where the episode ended, not wherever the frozen env would have gone on to."""
    from mural_jax.envs.point_maze import PointMaze

    step = PointMaze.step

    def ending_step(self, state, action):
        nxt = step(self, state, action)
        away = jnp.linalg.norm(nxt.obs - self._start) > 0.25
        return nxt.replace(done=away.astype(jnp.float32))

    monkeypatch.setattr(PointMaze, "step", ending_step)
    trainer = make_train(tiny(method="sparse", steps=400, eval_every=400, random_steps=400))
    state = trainer.init(jax.random.PRNGKey(0))
    start = np.asarray(state.env.obs[0])
    state, metrics = jax.jit(trainer.run_chunk)(state)
    data = jax.device_get(state.replay.data)
    n = trainer.config.num_envs
    ended = np.linalg.norm(data.next_obs[:400] - start, axis=-1) > 0.25
    assert 0 < ended.sum() < 400
    np.testing.assert_array_equal(data.terminated[:400], ended.astype(np.float32))
    assert np.all(data.truncated[:400][ended] == 0)
    for row in np.flatnonzero(ended[: 400 - n]):  # that env's next row starts afresh
        np.testing.assert_array_equal(data.obs[row + n], start)
    # Evaluation: the deterministic policy rolled out by hand, stopped at its first end.
    task, sac = trainer.task, trainer.agent
    env = jax.vmap(task.reset)(jax.random.split(jax.random.PRNGKey(1), 2))
    act, env_step = jax.jit(lambda o: sac.act(state.sac, o, None)), jax.jit(jax.vmap(task.step))
    final, alive = np.asarray(env.obs), np.ones(2, bool)
    for _ in range(trainer.horizon):
        env = env_step(env, act(env.obs))
        final = np.where(alive[:, None], np.asarray(env.obs), final)
        alive &= np.asarray(env.done) == 0
    assert not alive.all()  # the policy does reach the terminating region
    assert not np.allclose(np.asarray(env.obs), final)  # and moves on after it: freezing shows
    got = trainer.evaluate(state.replace(), jax.random.PRNGKey(2))
    want = float(np.mean(np.linalg.norm(final - np.asarray(task._goal), axis=-1)))
    np.testing.assert_allclose(float(got["eval/final_distance"]), want, rtol=1e-5)


def test_random_phase_ignores_the_policy_and_sac_waits_for_it():
    """Before random_steps the actions are uniform whatever the policy, and SAC does not
    update; the first iteration past it does."""
    cfg = tiny(method="sparse", steps=200, eval_every=200, random_steps=200)
    trainer = make_train(cfg)
    run = jax.jit(trainer.run_chunk)
    state = trainer.init(jax.random.PRNGKey(0))
    other = state.replace(sac=trainer.agent.init(jax.random.PRNGKey(99)))
    a, metrics = run(state)
    b, _ = run(other)
    np.testing.assert_array_equal(a.replay.data.action, b.replay.data.action)
    acts = np.asarray(a.replay.data.action[:200])
    assert np.all(np.abs(acts) <= 1) and acts.std() > 0.5  # uniform on [-1, 1]: std 0.58
    # Only the last iteration (env_steps 200 = random_steps) updated SAC: one of 50.
    assert float(metrics["train/critic_loss"]) != 0.0
    cfg_long = tiny(method="sparse", steps=200, eval_every=200, random_steps=400)
    trainer_long = make_train(cfg_long)
    state_long = trainer_long.init(jax.random.PRNGKey(0))
    after, m = jax.jit(trainer_long.run_chunk)(state_long)
    for x, y in zip(jax.tree.leaves(after.sac), jax.tree.leaves(state_long.sac), strict=True):
        np.testing.assert_array_equal(x, y)  # still random: SAC untouched
    assert float(m["train/critic_loss"]) == 0.0


@pytest.mark.parametrize("method", ["vice", "mural"])
def test_sac_gets_the_reward_methods_fresh_rewards_of_its_batch(method, monkeypatch):
    """One-step targets, fresh rewards (the default): each update's rewards are the reward
    method's, at update time, of exactly that batch (MURAL: with that batch's support key),
    not the rewards stored in the replay."""
    from mural_jax import replay as replay_lib
    from mural_jax.sac import SAC

    seen = []
    update = SAC.update

    def spy(self, state, batch, rewards, rng, discount=None):
        record = lambda obs, r: seen.append((np.asarray(obs), np.asarray(r)))  # noqa: E731
        jax.debug.callback(record, batch.obs, rewards, ordered=True)
        return update(self, state, batch, rewards, rng, discount)

    cfg = tiny(method=method, steps=200, eval_every=200, updates_per_step=0.5)
    trainer = make_train(cfg)
    state, _ = jax.jit(trainer.run_chunk)(trainer.init(jax.random.PRNGKey(6)))
    monkeypatch.setattr(SAC, "update", spy)
    rng = jax.random.PRNGKey(7)
    jax.block_until_ready(jax.jit(trainer._sac_updates)(state, rng))
    jax.effects_barrier()
    n = trainer.config.updates_per_iteration
    assert n == 2 and len(seen) == n
    k_batch, k_rew, _ = jax.random.split(rng, 3)
    for i, (obs, rewards) in enumerate(seen):
        want = replay_lib.sample(state.replay, jax.random.split(k_batch, n)[i], 32)
        np.testing.assert_array_equal(obs, want.obs)
        r = trainer.method.reward(
            state.reward, want.obs, want.next_obs, jax.random.split(k_rew, n)[i]
        )
        np.testing.assert_allclose(rewards, r, rtol=1e-5, atol=1e-6)
        assert np.asarray(r).std() > 0 and np.all(np.asarray(want.reward) == 0)  # not stored


@pytest.mark.parametrize("method", ["vice", "mural"])
def test_reward_at_collection_stores_learned_rewards(method):
    cfg = tiny(method=method, reward_at_collection=True)
    trainer = make_train(cfg)
    state0 = trainer.init(jax.random.PRNGKey(2))
    state, _ = jax.jit(trainer.run_chunk)(state0)
    stored = np.asarray(state.replay.data.reward[: int(state.replay.size)])
    assert np.all((stored > 0) & (stored < 1))
    assert stored.std() > 0  # learned, not the env's sparse reward (all zeros here)
    # Rows collected before the first retrain (random_steps = 100) hold the initial reward
    # state's reward of their own transition (MURAL untrained adapts on the query alone, so
    # its support draw does not matter).
    data = state.replay.data
    first = trainer.method.reward(
        state0.reward, data.obs[:100], data.next_obs[:100], jax.random.PRNGKey(0)
    )
    np.testing.assert_allclose(stored[:100], first, rtol=1e-5, atol=1e-6)
    later = trainer.method.reward(
        state0.reward, data.obs[150:200], data.next_obs[150:200], jax.random.PRNGKey(0)
    )
    assert not np.allclose(stored[150:200], later, atol=1e-3)  # retrained since


@pytest.mark.parametrize("method", ["vice", "mural"])
def test_relabel_rewards_keeps_stored_rewards_current(method):
    """With relabel_rewards every stored reward is the current classifier's after each
    retraining; without it the rows collected before the last retraining are stale."""
    kw = dict(method=method, reward_at_collection=True, relabel_chunk=48)
    trainer = make_train(tiny(relabel_rewards=True, **kw))
    stale = make_train(tiny(**kw))
    state0 = trainer.init(jax.random.PRNGKey(2))
    run = jax.jit(trainer.run_chunk)
    state, _ = run(state0)
    state, _ = run(state)  # 400 steps: retrained at 100 (initial), 200, 300 and 400
    assert run._cache_size() == 1
    old, _ = jax.jit(stale.run_chunk)(*jax.jit(stale.run_chunk)(state0)[:1])
    data, size = state.replay.data, int(state.replay.size)
    assert size == 400
    current = trainer.method.reward(
        state.reward, data.obs[:size], data.next_obs[:size], jax.random.PRNGKey(9)
    )
    stored = np.asarray(data.reward[:size])
    if method == "vice":  # a deterministic reward: exactly the current one
        np.testing.assert_allclose(stored, current, rtol=1e-5, atol=1e-6)
    else:  # up to the random support draw (63 of the 64-point pool)
        np.testing.assert_allclose(stored, current, atol=0.03)
    # Stored once: the rows collected before the last retraining are not the current reward.
    d = old.replay.data
    now = trainer.method.reward(old.reward, d.obs[:300], d.next_obs[:300], jax.random.PRNGKey(9))
    assert np.abs(np.asarray(d.reward[:300]) - np.asarray(now)).max() > 0.1


def test_relabel_draws_average_the_support_draws_of_stored_rewards():
    """relabel_draws: a stored reward is the mean of that many meta-NML support draws (so its
    spread over keys shrinks), and the switch to fresh rewards counts the extra queries."""
    cfg = tiny(method="mural", reward_at_collection=True, relabel_rewards=True, relabel_chunk=48)
    one, four = make_train(cfg), make_train(dataclasses.replace(cfg, relabel_draws=4))
    # 800 fresh queries a period: one draw a row costs more from 700 rows (+100 collected),
    # four draws from 100 rows (4 x (100 + 100)).
    assert (one.relabel_until, four.relabel_until) == (700, 100)
    state, _ = jax.jit(four.run_chunk)(four.init(jax.random.PRNGKey(3)))
    obs, nxt = state.replay.data.obs[:128], state.replay.data.next_obs[:128]
    key = jax.random.PRNGKey(5)
    stored = jax.jit(four._stored_reward)(state.reward, obs, nxt, key)
    single = jax.jit(four.method.reward)
    draws = [single(state.reward, obs, nxt, k) for k in jax.random.split(key, 4)]
    np.testing.assert_allclose(stored, np.mean(draws, 0), atol=1e-6)
    # One draw is the method's reward itself (the recorded relabelled runs are unchanged).
    np.testing.assert_array_equal(
        one._stored_reward(state.reward, obs, nxt, key), single(state.reward, obs, nxt, key)
    )
    keys = jax.random.split(jax.random.PRNGKey(6), 16)
    spread = lambda f: np.asarray([f(state.reward, obs, nxt, k) for k in keys]).std(0).mean()
    sd_one, sd_four = spread(single), spread(jax.jit(four._stored_reward))
    assert sd_one > 1e-3 and sd_four < 0.7 * sd_one, (sd_one, sd_four)
    # The training loop stores these averages: at collection and at a retraining before the
    # switch (two draws: from 300), twice the one-draw run's reward computations.
    two = make_train(dataclasses.replace(cfg, relabel_draws=2))
    assert two.relabel_until == 300

    def reward_calls(trainer, part, steps):
        calls = []
        counted = dataclasses.replace(trainer, method=CountingReward(trainer.method, calls))
        f = jax.jit(lambda s, k: getattr(counted, part)(s, k)[0].replay.data.reward)
        jax.block_until_ready(f(state.replace(env_steps=jnp.asarray(steps, jnp.int32)), key))
        return len(calls)

    for part, steps in (("_collect", 100), ("_learn_reward", 200)):  # 200: a retraining
        n_one, n_two = reward_calls(one, part, steps), reward_calls(two, part, steps)
        assert n_one > 0 and n_two == 2 * n_one, (part, n_one, n_two)


@dataclasses.dataclass(frozen=True)
class CountingReward:
    """A reward method that records every executed reward computation (in a vmapped jit)."""

    inner: object
    calls: list

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def reward(self, *args):
        jax.debug.callback(lambda: self.calls.append(1))
        return self.inner.reward(*args)


def test_relabel_rewards_turn_fresh_once_relabelling_costs_more():
    """Past relabel_until, sampled batches get fresh rewards and retrainings no longer relabel;
    before it, no fresh reward is computed, even under a vmap over seeds."""
    cfg = tiny(method="vice", reward_at_collection=True, relabel_rewards=True, relabel_chunk=48)
    trainer = make_train(cfg)
    # A retraining period (100 env steps) takes 25 iterations x 1 update x 32 rewards = 800
    # fresh queries; relabelling costs the rows plus 100 collected: more from 700 rows.
    assert trainer.relabel_until == 700
    assert make_train(dataclasses.replace(cfg, replay_capacity=600)).relabel_until is None
    assert make_train(dataclasses.replace(cfg, relabel_rewards=False)).relabel_until is None
    # The recorded relabelled runs never switched: the 300k zigzag holds at most 300k rows
    # against 320k fresh queries a period; the quickstart's 24k steps stop short of 63k.
    recorded = config_lib.load_experiment(
        "zigzag_maze_cpu_support256_balanced_nstep5_gamma99_relabel"
    )
    assert make_train(recorded).relabel_until is None
    quick = config_lib.load_experiment("quickstart")
    quick = dataclasses.replace(quick, reward_at_collection=True, relabel_rewards=True)
    assert make_train(quick).relabel_until == 63_000 > quick.steps
    # Exact in integers: 11 envs x 32 = 352 fresh queries an iteration, 32 a row's worth, so
    # 31 periods (float division gave 3200.0000000000005 and so one period late, 3200).
    odd = dataclasses.replace(
        cfg, num_envs=11, updates_per_step=1.0, eval_every=220, steps=440, replay_capacity=4000
    )
    assert make_train(odd).relabel_until == 3100
    state, _ = jax.jit(trainer.run_chunk)(trainer.init(jax.random.PRNGKey(0)))
    data = state.replay.data.replace(reward=jnp.full_like(state.replay.data.reward, 7.0))
    seeds = jax.tree.map(
        lambda x: jnp.stack([x, x]), state.replace(replay=state.replay.replace(data=data))
    )
    at = lambda step: seeds.replace(env_steps=jnp.full((2,), step, jnp.int32))
    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    calls = []
    counted = dataclasses.replace(trainer, method=CountingReward(trainer.method, calls))
    sampled = jax.jit(jax.vmap(lambda s, k: counted._sac_updates(s, k)[1]["reward_mean"]))
    stored = jax.block_until_ready(sampled(at(699), keys))
    assert calls == []
    np.testing.assert_allclose(stored, 7.0 * cfg.sac.reward_scale)
    fresh = jax.block_until_ready(sampled(at(700), keys))
    assert calls and np.all((fresh > 0) & (fresh < cfg.sac.reward_scale))
    assert sampled._cache_size() == 1
    # Retrainings (the iteration that crosses a multiple of update_every) relabel before it only.
    learn = jax.jit(jax.vmap(lambda s, k: trainer._learn_reward(s, k)[0].replay.data.reward))
    before, after = learn(at(600), keys), learn(at(800), keys)
    size = int(state.replay.size)
    assert np.all(np.asarray(before)[:, :size] < 1.0)  # relabelled: VICE's p(1|s)
    np.testing.assert_array_equal(after, 7.0)  # kept: sampled batches are fresh from here
    # Collection stores rewards only while something will read them: not in the iteration
    # that reaches the switch (its own batches are fresh) nor after it.
    collect = jax.jit(jax.vmap(lambda s, k: counted._collect(s, k)[0].replay.data.reward))
    calls.clear()
    new = lambda step: np.asarray(collect(at(step), keys))[:, size : size + cfg.num_envs]
    read = new(700 - 2 * cfg.num_envs)
    assert calls and np.all((read > 0) & (read < 1))  # VICE's p(1|s)
    calls.clear()
    np.testing.assert_array_equal(new(700 - cfg.num_envs), 0.0)
    np.testing.assert_array_equal(new(800), 0.0)
    assert calls == [] and collect._cache_size() == 1


def _products_outside_loops(hlo: str) -> int:
    """Matrix products (`dot`) of an optimised HLO module that no while loop reaches."""
    comps, name = {}, None  # computation name -> its text
    for line in hlo.splitlines():
        start = re.match(r"^(?:ENTRY )?%([\w.\-]+) .*\{$", line)
        if start:
            name = start.group(1)
            comps[name] = ""
        elif name is not None:
            comps[name] += line + "\n"

    def callees(text):
        named = re.findall(r"(?:calls|to_apply|body|condition)=%([\w.\-]+)", text)
        branches = re.findall(r"branch_computations=\{([^}]*)\}", text)
        return named + re.findall(r"%([\w.\-]+)", " ".join(branches))

    in_loops = set()
    todo = [
        c for text in comps.values() for c in re.findall(r"(?:body|condition)=%([\w.\-]+)", text)
    ]
    while todo:
        n = todo.pop()
        if n not in in_loops:
            in_loops.add(n)
            todo.extend(callees(comps.get(n, "")))
    return sum(len(re.findall(r"\bdot\(", t)) for n, t in comps.items() if n not in in_loops)


def test_fresh_rewards_after_the_switch_stay_inside_their_loop():
    """Before relabel_until, relabelled runs must not pay for the fresh rewards they would
    compute after it, nor after it for the collected rewards nothing reads: XLA hoists a loop
    body built from loop invariants out of the loop (where it ran on every iteration: ~30%
    slower), so no matrix product may leave the loop."""
    # The quickstart's sizes: with tiny networks XLA hoisted only one product of the body.
    quick = config_lib.load_experiment("quickstart")
    kw = dict(method="mural", reward_at_collection=True)
    relabelled = make_train(dataclasses.replace(quick, relabel_rewards=True, **kw))
    stored = make_train(dataclasses.replace(quick, **kw))
    fresh = make_train(dataclasses.replace(quick, method="mural"))  # collects no reward
    assert relabelled.relabel_until is not None

    def products(trainer, seeds, part):  # the training CLI runs one seed, reproductions a vmap
        step = lambda s, k: getattr(trainer, part)(s, k)[:2]
        init, step = (jax.vmap(trainer.init), jax.vmap(step)) if seeds else (trainer.init, step)
        keys = jax.random.split(jax.random.PRNGKey(1), seeds) if seeds else jax.random.PRNGKey(1)
        state = jax.eval_shape(init, keys)
        return _products_outside_loops(jax.jit(step).lower(state, keys).compile().as_text())

    for seeds in (0, 2):  # without the barrier: 20 products against 0 with one seed
        assert products(relabelled, seeds, "_sac_updates") == products(
            stored, seeds, "_sac_updates"
        ), seeds
        assert products(relabelled, seeds, "_collect") == products(fresh, seeds, "_collect")
    assert products(stored, 0, "_collect") > products(fresh, 0, "_collect")  # it can fail


def test_whole_run_is_pure_and_vmaps_over_seeds():
    trainer = make_train(tiny(steps=200, eval_every=200))
    run = jax.jit(jax.vmap(trainer.train))
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    state, metrics = run(keys)
    again, _ = run(keys)
    assert metrics["env_steps"].shape == (2, 1)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)  # pure: the same keys, the same whole state
    p = jax.tree.leaves(state.sac.policy_params)[0]
    assert not np.allclose(p[0], p[1])  # different seeds, different runs
    # Seed 1 of the vmapped run is the run of its key alone (up to float reduction order).
    alone, _ = jax.jit(trainer.train)(keys[1])
    assert int(alone.env_steps) == int(state.env_steps[1]) == 200
    for a, b in zip(jax.tree.leaves(alone.sac), jax.tree.leaves(state.sac), strict=True):
        np.testing.assert_allclose(a, b[1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        alone.replay.data.action, state.replay.data.action[1], rtol=1e-5, atol=1e-6
    )


def test_cli_writes_config_and_metrics_and_refuses_to_overwrite(tmp_path, capsys):
    out = str(tmp_path / "run")
    argv = [
        "--env",
        "zigzag_maze",
        "--method",
        "sparse",
        "--steps",
        "400",
        "--eval-every",
        "200",
        "--num-envs",
        "4",
        "--random-steps",
        "100",
        "--replay-capacity",
        "1000",
        "--eval-episodes",
        "4",
        "--sac.hidden",
        "16,16",
        "--sac.batch-size",
        "32",
        "--updates-per-step",
        "0.25",
        "--seed",
        "3",
        "--out",
        out,
    ]
    assert main(argv) == out
    printed = capsys.readouterr().out
    assert "steps/s" in printed and "ETA" in printed and out in printed
    cfg = json.load(open(os.path.join(out, "config.json")))
    assert cfg["seed"] == 3 and cfg["method"] == "sparse" and cfg["sac"]["hidden"] == [16, 16]
    assert config_lib.load_json(TrainConfig, os.path.join(out, "config.json")).seed == 3
    rows = list(csv.DictReader(open(os.path.join(out, "metrics.csv"))))
    assert [int(r["env_steps"]) for r in rows] == [200, 400]
    for col in ("eval/success_rate", "eval/final_distance", "train/steps_per_second"):
        assert col in rows[0]
    events = os.listdir(os.path.join(out, "tensorboard"))
    assert any(f.startswith("events.out.tfevents") for f in events)
    with pytest.raises(SystemExit) as e:  # never overwrite an existing run
        main(argv)
    assert e.value.code == 2 and "already holds a run" in capsys.readouterr().err


def test_cli_rejects_bad_values_before_compiling(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--method", "nope"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "method='nope'" in err and "mural" in err
    with pytest.raises(SystemExit):
        main(["--steps", "1000", "--eval-every", "300", "--num-envs", "4"])
    assert "multiple of eval_every" in capsys.readouterr().err


def test_retraining_moves_the_reward_and_eval_scores_the_success_examples():
    """VICE's reward follows its retrained classifier (the SAC batches' rewards at update
    time: test_sac_gets_the_reward_methods_fresh_rewards_of_its_batch)."""
    trainer = make_train(tiny(method="vice"))
    state = trainer.init(jax.random.PRNGKey(4))
    obs = jnp.array([[3.0, 3.0], [-3.0, -3.0]])
    r0 = trainer.method.reward(state.reward, obs, obs, None)
    state, metrics = jax.jit(trainer.run_chunk)(state)
    r1 = trainer.method.reward(state.reward, obs, obs, None)
    assert float(r1[0] - r1[1]) > float(r0[0] - r0[1]) + 0.1
    # The eval diagnostic scores the success examples, not the policy's final states.
    ex = state.success_examples[: trainer.config.eval_episodes]
    expected = trainer.method.reward(state.reward, ex, ex, None).mean()
    assert float(metrics["eval/success_example_reward"]) == pytest.approx(float(expected), abs=1e-5)
    assert float(metrics["eval/success_example_reward"]) > float(metrics["eval/learned_reward"])


# -- Checkpoints, resume, faults -----------------------------------------------------------


def _ckpt_argv(out, steps=1200):
    return ["--env", "zigzag_maze", "--method", "mural", "--steps", str(steps),
            "--eval-every", "200", "--checkpoint-every", "400", "--num-envs", "4",
            "--random-steps", "100", "--replay-capacity", "1000", "--eval-episodes", "4",
            "--sac.hidden", "16,16", "--sac.batch-size", "32", "--updates-per-step", "0.25",
            "--classifier.hidden", "16,16", "--classifier.reference-size", "64",
            "--classifier.update-every", "100", "--classifier.initial-epochs", "2",
            "--meta-nml.tasks-per-epoch", "4", "--meta-nml.num-query-points", "16",
            "--meta-nml.inference-chunk", "16", "--out", out]  # fmt: skip


def _restore(out):
    from mural_jax.checkpoint import Checkpointer

    cfg = config_lib.load_json(TrainConfig, os.path.join(out, "config.json"))
    trainer = make_train(cfg)
    ckpt = Checkpointer(os.path.join(out, "checkpoints"), use_async=False)
    state = ckpt.restore(jax.eval_shape(trainer.init, jax.random.PRNGKey(0)), cfg)
    ckpt.close()
    return state


def test_kill_and_resume_reaches_the_same_final_state(tmp_path):
    """A real kill -9 mid-run, then --resume: bit-identical to an uninterrupted run."""
    import signal
    import subprocess
    import sys
    import time

    full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    log = open(tmp_path / "child.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mural_jax.train", *_ckpt_argv(killed, steps=40_000)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    ckpt_dir = os.path.join(killed, "checkpoints")
    # Generous: the child compiles and trains on a CPU shared with the other test worker.
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        steps = [d for d in os.listdir(ckpt_dir)] if os.path.isdir(ckpt_dir) else []
        if any(d.isdigit() and int(d) >= 800 for d in steps):
            break
        time.sleep(0.2)
    died = proc.poll()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.seek(0)
    output = log.read()[-3000:]
    assert died is None, f"the run exited by itself ({died}) before the kill:\n{output}"
    saved = sorted(int(d) for d in os.listdir(ckpt_dir) if d.isdigit())
    assert saved and saved[-1] >= 800, f"no checkpoint >= 800 in time:\n{output}"
    rows = list(csv.DictReader(open(os.path.join(killed, "metrics.csv"))))
    # Lost at most two checkpoint intervals: a chunk's row is logged before its save is
    # queued, and saves are async, so the last save may still be in flight (orbax waits for it
    # before queuing the next), but the one before it is committed. Under CPU load this is hit.
    assert int(rows[-1]["env_steps"]) - saved[-1] <= 2 * 400

    # The kill lands wherever the run is (a fast machine may have committed 1200 already), so
    # the uninterrupted reference runs to one checkpoint interval past the last saved one.
    target = saved[-1] + 400
    main(_ckpt_argv(full, steps=target))
    reference = _restore(full)
    assert int(reference.env_steps) == target

    main(["--resume", killed, "--steps", str(target)])
    assert len(open(os.path.join(killed, "machines.jsonl")).readlines()) == 2  # start, resume
    resumed = _restore(killed)
    assert int(resumed.env_steps) == target
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(reference), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    rows = list(csv.DictReader(open(os.path.join(killed, "metrics.csv"))))
    assert [int(r["env_steps"]) for r in rows] == list(range(200, target + 1, 200))


def test_checkpoint_from_another_config_or_damaged_is_refused(tmp_path, capsys):
    out = str(tmp_path / "run")
    main(_ckpt_argv(out, steps=800))
    ckpt_dir = os.path.join(out, "checkpoints")
    before = sorted(os.listdir(ckpt_dir))
    with pytest.raises(SystemExit) as e:
        main(["--resume", out, "--sac.learning-rate", "0.01"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "another config" in err and "sac.learning_rate" in err
    # A checkpoint written before an option existed (simulated: the key removed from its saved
    # config) restores while the run keeps the option's default, and is refused otherwise.
    from mural_jax.checkpoint import Checkpointer, CheckpointError

    meta = os.path.join(ckpt_dir, "800", "config", "metadata")
    with open(meta) as f:
        saved = json.load(f)
    del saved["meta_nml"]["novel_query_fraction"]
    with open(meta, "w") as f:
        json.dump(saved, f)
    assert int(_restore(out).env_steps) == 800
    cfg = config_lib.load_json(TrainConfig, os.path.join(out, "config.json"))
    cfg = config_lib.replace(cfg, {"meta_nml.novel_query_fraction": 0.5})
    trainer = make_train(cfg)
    with pytest.raises(CheckpointError, match="novel_query_fraction: checkpoint 0.0 vs run 0.5"):
        Checkpointer(ckpt_dir, use_async=False).restore(
            jax.eval_shape(trainer.init, jax.random.PRNGKey(0)), cfg
        )
    # Damage the latest checkpoint's state files: a clear error naming the older step to fall
    # back to, nothing deleted.
    for root, _, files in os.walk(os.path.join(ckpt_dir, "800", "state")):
        for f in files:
            with open(os.path.join(root, f), "wb") as fh:
                fh.write(b"garbage")
    with pytest.raises(SystemExit):
        main(["--resume", out, "--steps", "1200"])
    err = capsys.readouterr().err
    assert "damaged" in err and "older checkpoints kept: [400]" in err
    assert sorted(os.listdir(ckpt_dir)) == before
    # A checkpoint saved with its replay buffer whose replay folder is gone is refused, not
    # resumed with an empty buffer.
    shutil.rmtree(os.path.join(ckpt_dir, "800", "replay"))
    with pytest.raises(SystemExit):
        main(["--resume", out, "--steps", "1200"])
    err = capsys.readouterr().err
    assert "checkpoint_replay=true" in err and "missing" in err


def test_checkpoint_keep_and_resuming_without_the_replay_buffer(tmp_path):
    """checkpoint_keep 2 keeps the two newest steps; --no-checkpoint-replay saves no buffer and
    its resume starts from an empty one with the rest of the state restored."""
    out = str(tmp_path / "run")
    main(_ckpt_argv(out, steps=1200) + ["--checkpoint-keep", "2", "--no-checkpoint-replay"])
    ckpt_dir = os.path.join(out, "checkpoints")
    assert sorted(int(d) for d in os.listdir(ckpt_dir) if d.isdigit()) == [800, 1200]
    assert not os.path.exists(os.path.join(ckpt_dir, "1200", "replay"))
    state = _restore(out)
    assert int(state.env_steps) == 1200 and int(state.replay.size) == 0
    assert int(state.reward.meta_epochs) > 0  # the rest of the state is the run's
    main(["--resume", out, "--steps", "1600"])
    rows = list(csv.DictReader(open(os.path.join(out, "metrics.csv"))))
    assert [int(r["env_steps"]) for r in rows] == list(range(200, 1601, 200))
    assert int(_restore(out).replay.size) == 0  # never saved, so never restored


def test_resume_step_falls_back_to_an_older_checkpoint_and_recomputes_the_rest(tmp_path, capsys):
    """--resume-step 400 of a run saved at 400, 800 and 1200 (say 1200 was damaged): the newer
    steps are set aside, not deleted, and the run recomputes them bit for bit."""
    out = str(tmp_path / "run")
    main(_ckpt_argv(out, steps=1200))
    ckpt_dir = os.path.join(out, "checkpoints")
    assert sorted(int(d) for d in os.listdir(ckpt_dir) if d.isdigit()) == [400, 800, 1200]
    original = _restore(out)
    with pytest.raises(SystemExit):
        main(["--resume", out, "--resume-step", "600", "--steps", "1200"])
    assert "resume_step=600 is invalid" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--resume-step", "400"])
    assert "without --resume" in capsys.readouterr().err
    main(["--resume", out, "--resume-step", "400", "--steps", "1200"])
    aside = os.path.join(out, "checkpoints_superseded")
    assert sorted(os.listdir(aside)) == ["1200", "800"]
    assert sorted(int(d) for d in os.listdir(ckpt_dir) if d.isdigit()) == [400, 800, 1200]
    for a, b in zip(jax.tree.leaves(_restore(out)), jax.tree.leaves(original), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    rows = list(csv.DictReader(open(os.path.join(out, "metrics.csv"))))
    assert [int(r["env_steps"]) for r in rows] == list(range(200, 1201, 200))


def _stopped_by_a_fault(out: str, method: str, capsys, checkpoint_every: int = 400) -> str:
    """Run the checkpointing config with `method`; it must stop with exit code 1. Its stderr."""
    argv = _ckpt_argv(out, steps=1200)
    argv[argv.index("mural")] = method
    argv[argv.index("--checkpoint-every") + 1] = str(checkpoint_every)
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 1
    return capsys.readouterr().err


def test_nan_is_detected_in_the_scan_and_reported(tmp_path, capsys, monkeypatch):
    """A reward that turns NaN mid-run stops the run with the quantity and the step."""
    from mural_jax.rewards.oracle import OracleReward

    def bad_reward(self, state, obs, next_obs, rng):
        r = self.task.dense_reward(obs, next_obs)
        return jnp.where(next_obs[:, 0] > -2.9, jnp.nan, r)  # NaN once the agent moves right

    monkeypatch.setattr(OracleReward, "reward", bad_reward)
    err = _stopped_by_a_fault(str(tmp_path / "nan"), "dense", capsys)
    assert "non-finite" in err and "at env step" in err
    assert "reward_mean" in err or "critic_loss" in err


def test_nan_in_the_environment_is_detected_before_it_is_checkpointed(
    tmp_path, capsys, monkeypatch
):
    """NaN physics (here: observations from an episode's 61st step on) stops the run with the
    first bad env step, after the checkpoint before it and before any checkpoint holds the
    poisoned replay; the sparse reward never sees it."""
    from mural_jax.envs.point_maze import PointMaze

    reset, step = PointMaze.reset, PointMaze.step

    def counted_reset(self, rng):
        return reset(self, rng).replace(info={"t": jnp.zeros((), jnp.int32)})

    def bad_step(self, state, action):
        nxt = step(self, state, action)
        t = state.info["t"] + 1
        return nxt.replace(obs=jnp.where(t > 60, jnp.nan, nxt.obs), info={"t": t})

    monkeypatch.setattr(PointMaze, "reset", counted_reset)
    monkeypatch.setattr(PointMaze, "step", bad_step)
    out = str(tmp_path / "nan_env")
    err = _stopped_by_a_fault(out, "sparse", capsys, checkpoint_every=200)
    assert "non-finite values (" in err and "transition at env step" in err
    at = int(err.split("transition at env step ")[1].split(")")[0].split(",")[0])
    assert at == 61 * 4  # 4 envs; the first episodes run from the first step (horizon 100)
    saved = [int(d) for d in os.listdir(os.path.join(out, "checkpoints")) if d.isdigit()]
    assert saved == [200], saved  # the chunk before is kept; the poisoned one is not saved


def test_wandb_is_optional_and_a_missing_package_is_a_clear_error(capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "wandb" else real(n, *a)
    )
    with pytest.raises(SystemExit) as e:
        main(["--wandb", "--steps", "400", "--eval-every", "200", "--num-envs", "4"])
    assert e.value.code == 2 and "pip install wandb" in capsys.readouterr().err
    assert TrainConfig().wandb is False


def test_device_memory_stays_flat_over_chunks():
    """Nothing accumulates per step: live device arrays are the same after every chunk."""
    trainer = make_train(tiny(method="mural", steps=2000))
    init, run_chunk, _ = trainer.compiled()  # jitted init, donated chunks (as the CLI)
    state = init(jax.random.PRNGKey(0))
    counts = []
    for _ in range(trainer.num_chunks):
        state, metrics = run_chunk(state)
        del metrics
        live = jax.live_arrays()
        counts.append((len(live), sum(a.nbytes for a in live)))
    assert len(set(counts[2:])) == 1, counts
    assert run_chunk._cache_size() == 1  # donated chunks never retrace


def test_resume_rejects_config_flag_and_too_few_steps_but_allows_devices(tmp_path, capsys):
    out = str(tmp_path / "run")
    main(_ckpt_argv(out, steps=400))
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["--resume", out, "--config", "quickstart"])
    assert "invalid with --resume" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--resume", out, "--steps", "400"])
    assert "checkpoint is at env step 400" in capsys.readouterr().err
    main(["--resume", out, "--steps", "600", "--devices", "1"])  # device count may change
    rows = list(csv.DictReader(open(os.path.join(out, "metrics.csv"))))
    assert [int(r["env_steps"]) for r in rows] == [200, 400, 600]


@pytest.mark.parametrize(
    "override,message",
    [
        ({"classifier.batch_size": 3}, "classifier.batch_size=3"),
        ({"classifier.update_every": 2}, "classifier.update_every=2"),
    ],
)
def test_schedule_and_batch_validation(override, message):
    with pytest.raises(config_lib.ConfigError, match=message.replace(".", r"\.")):
        config_lib.replace(tiny(), override).validate()


def test_checkpoint_keeps_zero_size_arrays(tmp_path):
    """MJX states hold zero-size fields (e.g. no activations); orbax cannot write those, so
    they are dropped on save and restored as zeros of the right shape."""
    from mural_jax.checkpoint import Checkpointer

    cfg = tiny()
    trainer = make_train(cfg)
    state = trainer.init(jax.random.PRNGKey(0))
    state = state.replace(env=state.env.replace(info={"act": jnp.zeros((4, 0), jnp.float32)}))
    ckpt = Checkpointer(str(tmp_path / "ckpt"), use_async=False)
    ckpt.save(0, state, cfg)
    ckpt.wait()
    restored = ckpt.restore(jax.eval_shape(lambda: state), cfg)
    ckpt.close()
    assert restored.env.info["act"].shape == (4, 0)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
