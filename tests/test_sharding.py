"""Scale-out on 4 simulated CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=4).

The checks run in a subprocess (the device count is fixed when JAX starts): a run on a 4-device
`data` mesh matches the 1-device run, each device holds only its shard of the replay buffer
and the envs, the chunk compiles once, checkpoints restore onto another device count, and
seeds of a vmapped run split over a second (`seed`) mesh axis match the unsharded run.
"""

import json
import os
import subprocess
import sys


def _worker(tmp: str) -> dict:
    import dataclasses

    import jax
    import numpy as np

    from mural_jax import sharding as sharding_lib
    from mural_jax.checkpoint import Checkpointer
    from mural_jax.train import make_train
    from tests.test_train import tiny

    assert len(jax.devices()) == 4, jax.devices()
    cfg = tiny(method="mural", steps=400, num_envs=8, replay_capacity=800)
    out = {}
    finals = {}
    for n in (1, 4):
        trainer = make_train(cfg, sharding_lib.make_mesh(n))
        init, run_chunk, shardings = trainer.compiled()
        state = init(jax.random.PRNGKey(0))
        for _ in range(trainer.num_chunks):
            state, metrics = run_chunk(state)
        out[f"cache_size_{n}"] = run_chunk._cache_size()
        obs_shards = state.replay.data.obs.addressable_shards
        env_shards = state.env.obs.addressable_shards
        out[f"replay_shard_rows_{n}"] = sorted({s.data.shape[0] for s in obs_shards})
        out[f"replay_devices_{n}"] = len({s.device for s in obs_shards})
        out[f"env_shard_rows_{n}"] = sorted({s.data.shape[0] for s in env_shards})
        out[f"critic_loss_{n}"] = float(metrics["train/critic_loss"])
        finals[n] = state
        if n == 4:  # save on 4 devices, restore onto 1 (resharding)
            ckpt = Checkpointer(os.path.join(tmp, "ckpt"), use_async=False)
            ckpt.save(int(state.env_steps), state, cfg)
            ckpt.wait()
            one = make_train(cfg, sharding_lib.make_mesh(1))
            _, _, sh1 = one.compiled()
            abstract = jax.eval_shape(one.init, jax.random.PRNGKey(0))
            restored = ckpt.restore(sharding_lib.with_shardings(abstract, sh1), cfg)
            ckpt.close()
            out["restored_devices"] = len(restored.replay.data.obs.sharding.device_set)
            out["restored_equal"] = all(
                np.array_equal(np.asarray(a), np.asarray(b))
                for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state), strict=True)
            )
    # Same program, same global batch and seed: equal up to float reduction order.
    diffs = [
        float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
        for a, b in zip(jax.tree.leaves(finals[1].sac), jax.tree.leaves(finals[4].sac), strict=True)
    ]
    out["max_param_diff"] = max(diffs)
    # Seeds over a second mesh axis: 2 seeds x 2 data devices vs the same vmapped run unsharded.
    seeds_out = {}
    keys = jax.vmap(jax.random.PRNGKey)(np.arange(2))
    one_chunk = dataclasses.replace(cfg, steps=cfg.eval_every)
    for label, mesh in (("plain", None), ("mesh", sharding_lib.make_seed_mesh(4, 2))):
        trainer = make_train(one_chunk, mesh)
        init, run_chunk = trainer.compiled_seeds(2)
        state = init(keys)
        for _ in range(trainer.num_chunks):
            state, metrics = run_chunk(state)
        seeds_out[label] = state
        if mesh is not None:
            shards = state.replay.data.obs.addressable_shards
            out["seed_replay_shard_shapes"] = sorted({tuple(x.data.shape) for x in shards})
            out["seed_replay_devices"] = len({x.device for x in shards})
            out["seed_metric_shape"] = list(metrics["train/critic_loss"].shape)
            seed_run = run_chunk
    out["seed_max_param_diff"] = max(
        float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
        for a, b in zip(
            jax.tree.leaves(seeds_out["plain"].sac), jax.tree.leaves(seeds_out["mesh"].sac),
            strict=True,
        )
    )  # fmt: skip
    out["seeds_differ"] = not np.allclose(
        np.asarray(seeds_out["mesh"].replay.data.obs[0]),
        np.asarray(seeds_out["mesh"].replay.data.obs[1]),
    )
    seed_run(seeds_out["mesh"])  # a second chunk on the seed mesh reuses the compiled one
    out["seed_cache_size"] = seed_run._cache_size()
    # Relabelled stored rewards: each device relabels its own rows; VICE's reward is
    # deterministic, so 1 and 4 devices store the same rewards (up to reduction order).
    relabelled = {}
    vice = dataclasses.replace(
        cfg,
        method="vice",
        steps=cfg.eval_every,
        reward_at_collection=True,
        relabel_rewards=True,
        updates_per_step=1.0,  # 25,600 fresh queries a period: relabelling never costs more
    )
    # Where it would, the switch compares device time: each device relabels its own block.
    larger = dataclasses.replace(vice, replay_capacity=4000)
    out["relabel_until"] = {
        n: make_train(larger, sharding_lib.make_mesh(n)).relabel_until for n in (1, 2, 4)
    }
    out["relabel_until_vice"] = make_train(vice, sharding_lib.make_mesh(4)).relabel_until
    for n in (1, 4):
        trainer = make_train(vice, sharding_lib.make_mesh(n))
        init, run_chunk, _ = trainer.compiled()
        state, _ = run_chunk(init(jax.random.PRNGKey(0)))
        relabelled[n] = state.replay.data.reward
        data = state.replay.data
        now = trainer.method.reward(state.reward, data.obs, data.next_obs, jax.random.PRNGKey(1))
        out[f"relabel_current_{n}"] = float(np.max(np.abs(np.asarray(now - data.reward)[:200])))
    out["relabel_devices"] = len({s.device for s in relabelled[4].addressable_shards})
    out["relabel_diff"] = float(
        np.max(np.abs(np.asarray(relabelled[1]) - np.asarray(relabelled[4])))
    )
    out["replay_equal"] = bool(
        np.allclose(
            np.asarray(finals[1].replay.data.obs), np.asarray(finals[4].replay.data.obs), atol=1e-4
        )  # fmt: skip
    )
    return out


def test_four_devices_match_one_and_shard_the_state(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": os.getcwd()}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, __file__, str(tmp_path)], env=env, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["cache_size_1"] == 1 and r["cache_size_4"] == 1
    assert r["replay_devices_4"] == 4 and r["replay_shard_rows_4"] == [200]  # 800 / 4
    assert r["env_shard_rows_4"] == [2]  # 8 envs / 4
    assert r["replay_shard_rows_1"] == [800]
    assert r["max_param_diff"] < 5e-5, r  # measured: 3.8e-6
    assert r["replay_equal"], r
    assert abs(r["critic_loss_1"] - r["critic_loss_4"]) < 1e-3 * max(1.0, abs(r["critic_loss_1"]))
    assert r["restored_devices"] == 1 and r["restored_equal"]
    # Seeds over the `seed` axis: each device holds one seed's half of its replay buffer.
    assert r["seed_replay_shard_shapes"] == [[1, 400, 2]] and r["seed_replay_devices"] == 4, r
    assert r["seed_cache_size"] == 1 and r["seed_metric_shape"] == [2]
    assert r["seed_max_param_diff"] < 5e-5, r
    assert r["seeds_differ"]
    # Relabelling on 4 devices: rows stay sharded, every stored reward is current, as on 1.
    assert r["relabel_devices"] == 4, r
    assert r["relabel_current_1"] < 1e-5 and r["relabel_current_4"] < 1e-5, r
    assert r["relabel_diff"] < 1e-4, r
    # 256 fresh queries an iteration of 8 envs: 32 rows' worth, so on one device the switch
    # comes after 31 periods, on D devices after ceil(31 / D); never with 800 rows.
    assert r["relabel_until"] == {"1": 3100, "2": 1600, "4": 800}, r
    assert r["relabel_until_vice"] is None, r


if __name__ == "__main__":
    print(json.dumps(_worker(sys.argv[1])))


def test_a_coordinator_without_process_count_or_id_is_a_clear_error(monkeypatch):
    """Defaulting them would make every host process 0 of 1 (all writing the same --out)."""
    import pytest

    from mural_jax import sharding as sharding_lib
    from mural_jax.config import ConfigError

    started = []
    monkeypatch.setattr(sharding_lib.jax.distributed, "initialize", lambda **k: started.append(k))
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "host0:1234")
    monkeypatch.delenv("JAX_NUM_PROCESSES", raising=False)
    monkeypatch.delenv("JAX_PROCESS_ID", raising=False)
    with pytest.raises(ConfigError, match="JAX_NUM_PROCESSES is unset"):
        sharding_lib.initialize_distributed()
    monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
    with pytest.raises(ConfigError, match="JAX_PROCESS_ID is unset"):
        sharding_lib.initialize_distributed()
    monkeypatch.setenv("JAX_PROCESS_ID", "4")
    with pytest.raises(ConfigError, match=r"JAX_PROCESS_ID=4 is invalid .* allowed: 0\.\.3"):
        sharding_lib.initialize_distributed()
    monkeypatch.setenv("JAX_PROCESS_ID", "x")
    with pytest.raises(ConfigError, match="JAX_PROCESS_ID='x' is invalid"):
        sharding_lib.initialize_distributed()
    assert not started
    monkeypatch.setenv("JAX_PROCESS_ID", "2")
    assert sharding_lib.initialize_distributed()
    assert started == [{"coordinator_address": "host0:1234", "num_processes": 4, "process_id": 2}]
