"""One program from one CPU to many accelerators and hosts: a `data` mesh over the devices.

The training state is laid out with `NamedSharding`s: the parallel environments and the replay
buffer are split along the `data` axis (each device holds only its shard), everything else
(networks, optimiser states, classifier, counters, keys) is replicated. The same jitted
`run_chunk` then runs SPMD: XLA partitions it and inserts the collectives, so gradients and
losses are averaged over the whole global batch and a run on N devices computes what the
one-device run computes (up to float reduction order). Multi-host: `initialize_distributed`
starts `jax.distributed` when the usual environment variables are set; only process 0 writes
logs, and orbax coordinates checkpoint writes across hosts.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mural_jax.config import ConfigError

DATA = "data"
#: Second mesh axis of seed-batched runs (`jax.vmap` over seeds): each seed on its own devices.
SEED = "seed"

# Environment variables that mean "this is one process of a multi-process job".
_DISTRIBUTED_ENV = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS")


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> bool:  # fmt: skip
    """Start jax.distributed for multi-host runs. Returns whether it was started.

    Explicit arguments win; otherwise JAX_COORDINATOR_ADDRESS (+ JAX_NUM_PROCESSES,
    JAX_PROCESS_ID) or a cluster JAX detects itself (TPU pods, SLURM with
    MURAL_JAX_DISTRIBUTED=1) start it.
    """
    env = os.environ
    coordinator = coordinator or next((env[k] for k in _DISTRIBUTED_ENV if k in env), None)
    if coordinator is not None:
        # Both are required: defaulting them would make every host process 0 of 1.
        if num_processes is None:
            num_processes = _env_int("JAX_NUM_PROCESSES", 1)
        if process_id is None:
            process_id = _env_int("JAX_PROCESS_ID", 0)
        if not 0 <= process_id < num_processes:
            raise ConfigError(
                f"JAX_PROCESS_ID={process_id} is invalid with JAX_NUM_PROCESSES={num_processes};"
                f" allowed: 0..{num_processes - 1}"
            )
        jax.distributed.initialize(
            coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
        )
        return True
    if env.get("MURAL_JAX_DISTRIBUTED") == "1":  # TPU pod slices / SLURM: auto-detected
        jax.distributed.initialize()
        return True
    return False


def _env_int(name: str, minimum: int) -> int:
    value = os.environ.get(name)
    if value is None:
        raise ConfigError(
            f"{name} is unset; allowed: an integer >= {minimum}, set on every host with the "
            "coordinator address (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID)"
        )
    try:
        out = int(value)
    except ValueError:
        out = minimum - 1
    if out < minimum:
        raise ConfigError(f"{name}={value!r} is invalid; allowed: an integer >= {minimum}")
    return out


def make_mesh(num_devices: int = 0) -> Mesh:
    """A 1-D `data` mesh over the first `num_devices` devices (0: all, across all hosts)."""
    devices = jax.devices()
    n = len(devices) if num_devices == 0 else num_devices
    if not 1 <= n <= len(devices):
        raise ValueError(
            f"devices={num_devices} is invalid; allowed: 0 (all) or 1..{len(devices)} "
            f"(devices present: {len(devices)})"
        )
    return Mesh(np.asarray(devices[:n]), (DATA,))


def check_divisible(mesh: Mesh, **sizes: int) -> None:
    """Sharded sizes must split evenly over the data axis."""
    n = mesh.shape[DATA]
    for name, size in sizes.items():
        if size % n:
            raise ValueError(f"{name}={size} is invalid on {n} devices; allowed: a multiple of {n}")


def make_seed_mesh(num_devices: int, seed_devices: int) -> Mesh:
    """A 2-D (`seed`, `data`) mesh: seeds of a vmapped run split over `seed_devices` groups,
    each seed's envs, replay and batches over the `num_devices / seed_devices` in its group."""
    devices = jax.devices()
    n = len(devices) if num_devices == 0 else num_devices
    if not 1 <= n <= len(devices) or seed_devices < 1 or n % seed_devices:
        raise ValueError(
            f"seed_devices={seed_devices} on devices={num_devices} is invalid; allowed: "
            f"1..{len(devices)} devices (0: all) split into seed_devices groups that divide them"
        )
    grid = np.asarray(devices[:n]).reshape(seed_devices, n // seed_devices)
    return Mesh(grid, (SEED, DATA))


def _is_split(path, leaf) -> bool:
    """Leaves laid out along `data`: the env states and the replay buffer's rows."""
    keys = [getattr(k, "name", getattr(k, "key", None)) for k in path]
    return keys[:1] in (["env"], ["episode_step"]) or keys[:2] == ["replay", "data"]


def state_shardings(abstract_state, mesh: Mesh):
    """Shardings for a `TrainState`: envs and replay split over `data`, the rest replicated."""
    replicated = NamedSharding(mesh, P())
    split = NamedSharding(mesh, P(DATA))

    def spec(path, leaf):
        return split if _is_split(path, leaf) and leaf.ndim >= 1 else replicated

    return jax.tree_util.tree_map_with_path(spec, abstract_state)


def seed_state_shardings(abstract_states, mesh: Mesh):
    """Shardings for seed-batched `TrainState`s (leading seed axis): the seed axis over `seed`,
    then envs and replay over `data` as in `state_shardings`."""
    by_seed = NamedSharding(mesh, P(SEED))
    split = NamedSharding(mesh, P(SEED, DATA))

    def spec(path, leaf):
        return split if _is_split(path, leaf) and leaf.ndim >= 2 else by_seed

    return jax.tree_util.tree_map_with_path(spec, abstract_states)


def with_shardings(abstract_state, shardings):
    """ShapeDtypeStructs carrying shardings (orbax restores onto them: resharding)."""
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, shardings
    )
