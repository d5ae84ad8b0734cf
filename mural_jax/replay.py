"""Fixed-capacity replay ring buffer that lives on the device (a pytree of arrays)."""

from __future__ import annotations

from collections.abc import Callable

import chex
import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class Transition:
    """One environment step. `next_obs` is the real next observation, also at episode ends.

    `terminated`: a true terminal state (no bootstrap). `truncated`: the time limit ended the
    episode (bootstrap from `next_obs`). `reward` is the environment's reward, or the learned
    reward computed at collection when rewards are stored once (the original's behaviour).
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array
    truncated: jax.Array


@flax.struct.dataclass
class ReplayBuffer:
    data: Transition  # every leaf has leading dimension `capacity`
    position: jax.Array  # next slot to write
    size: jax.Array  # number of valid entries (<= capacity)

    @property
    def capacity(self) -> int:
        return self.data.obs.shape[0]


def init(capacity: int, obs_size: int, action_size: int) -> ReplayBuffer:
    """An empty buffer of `capacity` transitions (float32, flags as float32 0/1)."""
    if capacity < 1:
        raise ValueError(f"replay capacity={capacity} must be >= 1")
    z = lambda *shape: jnp.zeros((capacity, *shape), jnp.float32)
    data = Transition(
        obs=z(obs_size),
        action=z(action_size),
        reward=z(),
        next_obs=z(obs_size),
        terminated=z(),
        truncated=z(),
    )
    return ReplayBuffer(data=data, position=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32))


def insert(buffer: ReplayBuffer, batch: Transition) -> ReplayBuffer:
    """Write a batch of transitions (leading dim n <= capacity), wrapping around the end."""
    n = batch.obs.shape[0]
    chex.assert_tree_shape_prefix(batch, (n,))
    if n > buffer.capacity:
        raise ValueError(f"insert of {n} transitions exceeds replay capacity {buffer.capacity}")
    idx = (buffer.position + jnp.arange(n)) % buffer.capacity
    data = jax.tree.map(lambda d, b: d.at[idx].set(b.astype(d.dtype)), buffer.data, batch)
    return ReplayBuffer(
        data=data,
        position=(buffer.position + n) % buffer.capacity,
        size=jnp.minimum(buffer.size + n, buffer.capacity),
    )


def sample(buffer: ReplayBuffer, rng: jax.Array, batch_size: int) -> Transition:
    """Uniform sample (with replacement) of `batch_size` valid transitions."""
    idx = jax.random.randint(rng, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda d: d[idx], buffer.data)


def sample_obs(buffer: ReplayBuffer, rng: jax.Array, n: int) -> jax.Array:
    """Uniform sample of visited states (next observations: every state reached)."""
    idx = jax.random.randint(rng, (n,), 0, jnp.maximum(buffer.size, 1))
    return buffer.data.next_obs[idx]


def sample_sequences(
    buffer: ReplayBuffer, rng: jax.Array, batch_size: int, length: int, stride: int
) -> tuple[Transition, jax.Array]:
    """Uniform start transitions, each followed by up to `length - 1` later ones of its env.

    Every insert writes one row per env (`stride` rows), so the env's next transition after row
    i is row i + stride. Returns leaves of shape (batch_size, length, ...) and a (batch_size,
    length) float mask: step k is valid if it has been written and no earlier step of the
    sequence ended its episode (terminated or truncated). Step 0 is always valid, and the start
    rows are drawn exactly as `sample` draws them (the same rng gives the same rows).
    """
    idx = jax.random.randint(rng, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    offsets = jnp.arange(length) * stride
    rows = (idx[:, None] + offsets) % buffer.capacity
    seq = jax.tree.map(lambda d: d[rows], buffer.data)
    newer = (buffer.position - 1 - idx) % buffer.capacity  # rows written after the start row
    written = newer[:, None] >= offsets
    ended = (seq.terminated + seq.truncated) > 0
    ended_before = (jnp.cumsum(ended, axis=1) - ended) > 0
    mask = (written & ~ended_before).astype(jnp.float32)
    return seq, mask


def n_step_batch(
    seq: Transition, rewards: jax.Array, mask: jax.Array, gamma: float
) -> tuple[Transition, jax.Array]:
    """Collapse sampled sequences into n-step transitions for the critic.

    Returns the first step's (obs, action) with the last valid step's next_obs and flags and,
    as its reward, the discounted sum sum_k gamma^k r_k over valid steps; and the bootstrap
    discount gamma^m (1 - terminated) for m valid steps.
    """
    chex.assert_equal_shape([rewards, mask])
    length = mask.shape[1]
    steps = mask.sum(axis=1)
    last = steps.astype(jnp.int32) - 1

    def pick(x):  # x[b, last[b]]; invalid steps may hold stale rows, never mixed in
        index = last.reshape(-1, *([1] * (x.ndim - 1)))
        return jnp.take_along_axis(x, index, axis=1)[:, 0]

    batch = Transition(
        obs=seq.obs[:, 0],
        action=seq.action[:, 0],
        reward=jnp.where(mask > 0, rewards * gamma ** jnp.arange(length), 0.0).sum(axis=1),
        next_obs=pick(seq.next_obs),
        terminated=pick(seq.terminated),
        truncated=pick(seq.truncated),
    )
    discount = gamma**steps * (1.0 - batch.terminated)
    return batch, discount


def relabel(
    buffer: ReplayBuffer,
    reward_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
    rng: jax.Array,
    chunk: int,
    groups: int = 1,
    active: jax.Array | bool = True,
) -> ReplayBuffer:
    """Recompute the stored reward of every valid transition: reward_fn(obs, next_obs, key).

    The rows are viewed as `groups` contiguous blocks (the data-parallel devices' shards, so
    each device relabels its own rows); a loop takes `chunk` rows of every block per step,
    vmapping reward_fn over the blocks with key fold_in(fold_in(rng, step), block). The loop
    covers only the filled rows (valid rows are 0..size-1: the ring wraps only once full), so
    the cost follows `size`, not the capacity: while the replay fills the first block, the
    other blocks' steps compute masked rows. Keys and chunks follow the blocks, so a random
    reward_fn (meta-NML's support draws) relabels differently for another `groups`. A block's
    last chunk is shifted back to end at the block's end when it would run past it (the
    overlap is recomputed); rows at or beyond `size` keep their reward. With `active` false
    the loop runs no step: unlike a `lax.cond`, which a `vmap` over seeds turns into running
    both branches, this stays free when batched.
    """
    cap = buffer.capacity
    if cap % groups:
        raise ValueError(f"relabel: capacity {cap} is not divisible by groups={groups}")
    block = cap // groups
    chunk = min(chunk, block)
    n_steps = jnp.where(active, (jnp.minimum(buffer.size, block) + chunk - 1) // chunk, 0)
    blocks = lambda x: x.reshape(groups, block, *x.shape[1:])
    obs, next_obs = blocks(buffer.data.obs), blocks(buffer.data.next_obs)
    row = jnp.arange(groups)[:, None] * block + jnp.arange(chunk)[None, :]

    def body(i, rewards):
        start = jnp.minimum(i * chunk, block - chunk)
        take = lambda x: jax.lax.dynamic_slice_in_dim(x, start, chunk, axis=1)
        keys = jax.vmap(lambda g: jax.random.fold_in(jax.random.fold_in(rng, i), g))(
            jnp.arange(groups)
        )
        new = jax.vmap(reward_fn)(take(obs), take(next_obs), keys)
        chex.assert_shape(new, (groups, chunk))
        new = jnp.where(row + start < buffer.size, new.astype(rewards.dtype), take(rewards))
        return jax.lax.dynamic_update_slice_in_dim(rewards, new, start, axis=1)

    rewards = jax.lax.fori_loop(0, n_steps, body, blocks(buffer.data.reward))
    return buffer.replace(data=buffer.data.replace(reward=rewards.reshape(cap)))
