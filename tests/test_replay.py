"""Device replay ring buffer: shapes, ring order, valid-only sampling, flags, jit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mural_jax import replay
from mural_jax.replay import ReplayBuffer, Transition

OBS, ACT = 3, 2


def make_batch(ids, obs_size: int = OBS, act_size: int = ACT) -> Transition:
    """Transitions whose every field encodes its id (so positions can be checked exactly)."""
    ids = np.asarray(ids, np.float32)
    n = len(ids)
    return Transition(
        obs=jnp.asarray(ids[:, None] + np.arange(obs_size) / 10, jnp.float32),
        action=jnp.asarray(-ids[:, None] - np.arange(act_size) / 10, jnp.float32),
        reward=jnp.asarray(ids * 2, jnp.float32),
        next_obs=jnp.asarray(ids[:, None] + 1000 + np.arange(obs_size) / 10, jnp.float32),
        terminated=jnp.asarray(ids % 2 == 0, jnp.float32).reshape(n),
        truncated=jnp.asarray(ids % 3 == 0, jnp.float32).reshape(n),
    )


def ids_of(t: Transition) -> np.ndarray:
    return np.asarray(t.reward) / 2


def assert_consistent(t: Transition) -> None:
    """Every field of each row belongs to the same transition (rows are not mixed up)."""
    ids = ids_of(t)
    np.testing.assert_allclose(np.asarray(t.obs)[..., 0], ids)
    np.testing.assert_allclose(np.asarray(t.obs)[..., 2] - ids, 0.2, atol=1e-5)
    np.testing.assert_allclose(np.asarray(t.action)[..., 0], -ids)
    np.testing.assert_allclose(np.asarray(t.next_obs)[..., 0], ids + 1000)
    np.testing.assert_array_equal(np.asarray(t.terminated), (ids % 2 == 0).astype(np.float32))
    np.testing.assert_array_equal(np.asarray(t.truncated), (ids % 3 == 0).astype(np.float32))


def test_init_shapes_and_dtypes():
    buf = replay.init(7, OBS, ACT)
    assert isinstance(buf, ReplayBuffer)
    assert buf.capacity == 7
    shapes = {k: v.shape for k, v in vars(buf.data).items()}
    assert shapes == {
        "obs": (7, OBS),
        "action": (7, ACT),
        "reward": (7,),
        "next_obs": (7, OBS),
        "terminated": (7,),
        "truncated": (7,),
    }
    for leaf in jax.tree.leaves(buf.data):
        assert leaf.dtype == jnp.float32
        assert not np.any(np.asarray(leaf))
    assert int(buf.position) == 0 and int(buf.size) == 0
    assert buf.position.dtype == jnp.int32


def test_init_rejects_zero_capacity():
    with pytest.raises(ValueError, match="0"):
        replay.init(0, OBS, ACT)


def test_insert_one_batch():
    buf = replay.insert(replay.init(10, OBS, ACT), make_batch([5, 6, 7]))
    assert int(buf.size) == 3 and int(buf.position) == 3
    np.testing.assert_array_equal(ids_of(buf.data), [5, 6, 7, 0, 0, 0, 0, 0, 0, 0])
    head = jax.tree.map(lambda x: x[:3], buf.data)
    assert_consistent(head)
    # Untouched slots stay zero.
    for leaf in jax.tree.leaves(buf.data):
        assert not np.any(np.asarray(leaf)[3:])


def test_insert_casts_to_buffer_dtype():
    batch = make_batch([1, 2]).replace(terminated=jnp.array([True, False]))
    buf = replay.insert(replay.init(4, OBS, ACT), batch)
    assert buf.data.terminated.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(buf.data.terminated[:2]), [1.0, 0.0])


def test_wrap_around_keeps_last_entries_in_ring_order():
    buf = replay.init(10, OBS, ACT)
    for k in range(4):  # ids 0..11
        buf = replay.insert(buf, make_batch([3 * k, 3 * k + 1, 3 * k + 2]))
    assert int(buf.size) == 10
    assert int(buf.position) == 2
    # Slots 0, 1 were overwritten by ids 10, 11; slots 2..9 still hold ids 2..9.
    np.testing.assert_array_equal(ids_of(buf.data), [10, 11, 2, 3, 4, 5, 6, 7, 8, 9])
    assert_consistent(buf.data)
    # Reading from `position` onwards gives the last 10 inserted, oldest first.
    ring = np.roll(ids_of(buf.data), -int(buf.position))
    np.testing.assert_array_equal(ring, np.arange(2, 12))


def test_wrap_around_batch_straddling_the_end():
    buf = replay.insert(replay.init(5, OBS, ACT), make_batch([1, 2, 3, 4]))
    buf = replay.insert(buf, make_batch([5, 6, 7]))
    np.testing.assert_array_equal(ids_of(buf.data), [6, 7, 3, 4, 5])
    assert int(buf.position) == 2 and int(buf.size) == 5
    # A batch of exactly the capacity replaces everything and keeps the position.
    buf = replay.insert(buf, make_batch([10, 11, 12, 13, 14]))
    np.testing.assert_array_equal(ids_of(buf.data), [13, 14, 10, 11, 12])
    assert int(buf.position) == 2 and int(buf.size) == 5


def test_insert_larger_than_capacity_raises():
    with pytest.raises(ValueError) as info:
        replay.insert(replay.init(4, OBS, ACT), make_batch(range(5)))
    assert "5" in str(info.value) and "4" in str(info.value)


def test_insert_rejects_mismatched_leading_dims():
    bad = make_batch([1, 2, 3]).replace(reward=jnp.zeros(2))
    with pytest.raises(AssertionError):
        replay.insert(replay.init(10, OBS, ACT), bad)


def test_sample_shapes():
    buf = replay.insert(replay.init(100, OBS, ACT), make_batch(range(1, 21)))
    s = replay.sample(buf, jax.random.PRNGKey(0), 32)
    assert s.obs.shape == (32, OBS)
    assert s.action.shape == (32, ACT)
    assert s.next_obs.shape == (32, OBS)
    for f in (s.reward, s.terminated, s.truncated):
        assert f.shape == (32,)
    assert_consistent(s)


def test_sample_only_valid_entries():
    ids = [11, 22, 33, 44, 55]
    buf = replay.insert(replay.init(100, OBS, ACT), make_batch(ids))
    s = replay.sample(buf, jax.random.PRNGKey(1), 2000)
    got = ids_of(s)
    assert set(got.tolist()) == set(ids)  # only the 5 entries, and all of them
    # Roughly uniform over the valid entries.
    counts = np.array([(got == i).sum() for i in ids])
    assert counts.min() > 300 and counts.max() < 500
    assert_consistent(s)
    # After wrap-around every slot is valid.
    full = replay.insert(replay.init(8, OBS, ACT), make_batch(range(1, 9)))
    full = replay.insert(full, make_batch([100, 101]))
    got = ids_of(replay.sample(full, jax.random.PRNGKey(2), 2000))
    assert set(got.tolist()) == {100, 101, 3, 4, 5, 6, 7, 8}


def test_sample_is_deterministic_for_fixed_rng():
    buf = replay.insert(replay.init(50, OBS, ACT), make_batch(range(1, 41)))
    a = replay.sample(buf, jax.random.PRNGKey(3), 64)
    b = replay.sample(buf, jax.random.PRNGKey(3), 64)
    c = replay.sample(buf, jax.random.PRNGKey(4), 64)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not np.array_equal(ids_of(a), ids_of(c))


def test_termination_and_truncation_flags_round_trip():
    n = 12
    term = np.array([1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 1], np.float32)
    trunc = np.array([0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1], np.float32)
    batch = make_batch(range(n)).replace(terminated=jnp.asarray(term), truncated=jnp.asarray(trunc))
    buf = replay.insert(replay.init(n, OBS, ACT), batch)
    np.testing.assert_array_equal(np.asarray(buf.data.terminated), term)
    np.testing.assert_array_equal(np.asarray(buf.data.truncated), trunc)
    s = replay.sample(buf, jax.random.PRNGKey(5), 500)
    idx = ids_of(s).astype(int)
    np.testing.assert_array_equal(np.asarray(s.terminated), term[idx])
    np.testing.assert_array_equal(np.asarray(s.truncated), trunc[idx])
    # Both flag combinations that matter are present and kept distinct.
    assert np.any((np.asarray(s.terminated) == 1) & (np.asarray(s.truncated) == 0))
    assert np.any((np.asarray(s.terminated) == 0) & (np.asarray(s.truncated) == 1))


def test_sample_obs_returns_next_obs_rows():
    buf = replay.insert(replay.init(100, OBS, ACT), make_batch([7, 8, 9]))
    obs = np.asarray(replay.sample_obs(buf, jax.random.PRNGKey(6), 300))
    assert obs.shape == (300, OBS)
    ids = obs[:, 0] - 1000
    assert set(np.round(ids).tolist()) == {7, 8, 9}
    np.testing.assert_allclose(obs[:, 1] - obs[:, 0], 0.1, atol=1e-4)
    # Same rng and count: the same rows as `sample` would pick.
    s = replay.sample(buf, jax.random.PRNGKey(6), 300)
    np.testing.assert_array_equal(obs, np.asarray(s.next_obs))


def test_jit_insert_and_sample_no_retrace():
    traces = {"insert": 0, "sample": 0}

    def insert(buf, batch):
        traces["insert"] += 1
        return replay.insert(buf, batch)

    def sample(buf, rng):
        traces["sample"] += 1
        return replay.sample(buf, rng, 16), replay.sample_obs(buf, rng, 16)

    insert_j, sample_j = jax.jit(insert), jax.jit(sample)
    buf = replay.init(10, OBS, ACT)
    for k in range(5):  # 15 transitions through a capacity of 10: wraps under jit
        buf = insert_j(buf, make_batch([3 * k + 1, 3 * k + 2, 3 * k + 3]))
        s, obs = sample_j(buf, jax.random.PRNGKey(k))
        got = ids_of(s)
        assert set(got.tolist()) <= set(range(max(1, 3 * k + 4 - 10), 3 * k + 4))
        assert_consistent(s)
        np.testing.assert_allclose(np.asarray(obs)[:, 0], got + 1000)
    assert traces == {"insert": 1, "sample": 1}
    assert int(buf.size) == 10 and int(buf.position) == 5
    np.testing.assert_array_equal(ids_of(buf.data), [11, 12, 13, 14, 15, 6, 7, 8, 9, 10])
    # Same results as eager.
    eager = replay.init(10, OBS, ACT)
    for k in range(5):
        eager = replay.insert(eager, make_batch([3 * k + 1, 3 * k + 2, 3 * k + 3]))
    for x, y in zip(jax.tree.leaves(eager), jax.tree.leaves(buf), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _donated_inserts(buf: ReplayBuffer) -> ReplayBuffer:
    insert_j = jax.jit(replay.insert, donate_argnums=0)
    for k in range(3):
        buf = insert_j(buf, make_batch([2 * k + 1, 2 * k + 2]))
    return buf


def test_jit_with_donated_buffer_from_jitted_init():
    buf = jax.jit(replay.init, static_argnums=(0, 1, 2))(6, OBS, ACT)
    buf = _donated_inserts(buf)
    np.testing.assert_array_equal(ids_of(buf.data), [1, 2, 3, 4, 5, 6])
    assert int(buf.size) == 6 and int(buf.position) == 0


def test_jit_with_donated_buffer_from_eager_init():
    buf = replay.init(6, OBS, ACT)
    buf = _donated_inserts(buf)
    np.testing.assert_array_equal(ids_of(buf.data), [1, 2, 3, 4, 5, 6])


def episode_rows(num_envs: int, iterations: int, ends: dict) -> list[Transition]:
    """Rows as the trainer inserts them: one per env per iteration. Row (t, e) has id
    100 e + t; `ends[(t, e)]` is "term" or "trunc" for the step that ends an episode."""
    batches = []
    for t in range(iterations):
        ids = np.array([100 * e + t for e in range(num_envs)], np.float32)
        kind = [ends.get((t, e)) for e in range(num_envs)]
        batches.append(
            Transition(
                obs=jnp.asarray(ids[:, None] * np.ones((1, OBS)), jnp.float32),
                action=jnp.asarray(-ids[:, None] * np.ones((1, ACT)), jnp.float32),
                reward=jnp.asarray(ids * 2, jnp.float32),
                next_obs=jnp.asarray(ids[:, None] + 0.5, jnp.float32) * jnp.ones((1, OBS)),
                terminated=jnp.asarray([k == "term" for k in kind], jnp.float32),
                truncated=jnp.asarray([k == "trunc" for k in kind], jnp.float32),
            )
        )
    return batches


@pytest.mark.parametrize("capacity", [64, 13])  # 13: the ring wraps, mid-iteration
def test_sample_sequences_follow_one_env_until_its_episode_ends(capacity):
    num_envs, iterations, length = 2, 10, 4
    ends = {(2, 0): "term", (5, 0): "trunc", (3, 1): "trunc", (8, 1): "term"}
    buf = replay.init(capacity, OBS, ACT)
    for b in episode_rows(num_envs, iterations, ends):
        buf = replay.insert(buf, b)
    seq, mask = replay.sample_sequences(buf, jax.random.PRNGKey(0), 512, length, num_envs)
    assert seq.obs.shape == (512, length, OBS) and mask.shape == (512, length)
    starts = set()
    for ids, m in zip(np.asarray(seq.reward) / 2, np.asarray(mask), strict=True):
        e, t = divmod(int(ids[0]), 100)
        starts.add((t, e))
        expected_valid, stopped = [], False
        for k in range(length):
            ok = not stopped and t + k < iterations
            expected_valid.append(ok)
            stopped = stopped or ends.get((t + k, e)) is not None
        np.testing.assert_array_equal(m, np.float32(expected_valid), err_msg=f"start {(t, e)}")
        valid = np.asarray(expected_valid)
        np.testing.assert_array_equal(ids[valid], [100 * e + t + k for k in np.flatnonzero(valid)])
    # only rows still in the buffer start a sequence, and with 512 draws every one of them does
    kept = [(t, e) for t in range(iterations) for e in range(num_envs)][-capacity:]
    assert starts == set(kept)


def test_sample_sequences_start_rows_are_the_rows_sample_draws():
    buf = replay.init(50, OBS, ACT)
    for b in episode_rows(3, 12, {}):
        buf = replay.insert(buf, b)
    rng = jax.random.PRNGKey(3)
    seq, mask = replay.sample_sequences(buf, rng, 64, 3, 3)
    one = replay.sample(buf, rng, 64)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[:, 0], b), seq, one)
    assert np.all(np.asarray(mask)[:, 0] == 1)


def test_n_step_batch_matches_a_loop():
    rng = np.random.default_rng(0)
    b, n, gamma = 32, 4, 0.9
    seq = Transition(
        obs=jnp.asarray(rng.normal(size=(b, n, OBS)), jnp.float32),
        action=jnp.asarray(rng.normal(size=(b, n, ACT)), jnp.float32),
        reward=jnp.zeros((b, n)),
        next_obs=jnp.asarray(rng.normal(size=(b, n, OBS)), jnp.float32),
        terminated=jnp.asarray(rng.random((b, n)) < 0.3, jnp.float32),
        truncated=jnp.asarray(rng.random((b, n)) < 0.3, jnp.float32),
    )
    steps = rng.integers(1, n + 1, size=b)
    mask = (np.arange(n) < steps[:, None]).astype(np.float32)
    rewards = rng.normal(size=(b, n)).astype(np.float32)
    rewards[mask == 0] = np.nan  # invalid steps' rewards (stale rows) must never leak in
    batch, discount = replay.n_step_batch(seq, jnp.asarray(rewards), jnp.asarray(mask), gamma)
    for i in range(b):
        m = steps[i]
        np.testing.assert_allclose(
            batch.reward[i], sum(gamma**k * rewards[i, k] for k in range(m)), 1e-5
        )
        term = float(seq.terminated[i, m - 1])
        np.testing.assert_allclose(discount[i], gamma**m * (1 - term), rtol=1e-6)
        np.testing.assert_array_equal(batch.next_obs[i], seq.next_obs[i, m - 1])
        np.testing.assert_array_equal(batch.obs[i], seq.obs[i, 0])
        np.testing.assert_array_equal(batch.action[i], seq.action[i, 0])
        assert batch.truncated[i] == seq.truncated[i, m - 1]


@pytest.mark.parametrize("filled", [0, 5, 23, 37, 40, 45])
def test_relabel_recomputes_only_the_filled_rows(filled):
    """Capacity 40 in chunks of 16 (which do not divide it): every valid row gets
    reward_fn of its own transition, with its chunk's key; rows past `size` keep theirs."""
    buf = replay.init(40, OBS, ACT)
    if filled:
        buf = replay.insert(buf, make_batch(np.arange(min(filled, 40))))
    if filled > 40:
        buf = replay.insert(buf, make_batch(np.arange(40, filled)))
    rng = jax.random.PRNGKey(3)
    calls = []

    def reward_fn(obs, next_obs, key):
        calls.append(1)  # traced once per compile
        chunk_id = jax.random.uniform(key)  # which key a row was relabelled with
        return next_obs[:, 0] - obs[:, 0] + chunk_id  # 1000 + the chunk's draw

    out = jax.jit(lambda b: replay.relabel(b, reward_fn, rng, 16))(buf)
    size = int(buf.size)
    new, old = np.asarray(out.data.reward), np.asarray(buf.data.reward)
    np.testing.assert_array_equal(new[size:], old[size:])
    key = lambda i: jax.random.fold_in(jax.random.fold_in(rng, i), 0)  # step i, block 0
    draws = [float(jax.random.uniform(key(i))) for i in range(3)]
    want = 1000 + np.array([draws[0]] * 16 + [draws[1]] * 24, np.float32)
    if size > 32:  # a third chunk, shifted back to rows 24-39 (it recomputes 24-31)
        want[24:] = 1000 + draws[2]
    np.testing.assert_allclose(new[:size], want[:size], rtol=1e-6)
    # Everything else in the buffer is untouched.
    for name in ("obs", "action", "next_obs", "terminated", "truncated"):
        np.testing.assert_array_equal(getattr(out.data, name), getattr(buf.data, name))
    assert int(out.size) == size and int(out.position) == int(buf.position)
    assert len(calls) == 1


def test_relabel_in_blocks_relabels_each_block_on_its_own():
    """groups=2 over capacity 40 holding 30 rows: block 0 (rows 0-19) is full, block 1
    (rows 20-39) holds 10; chunks of 8 per block with the shifted last chunk."""
    buf = replay.insert(replay.init(40, OBS, ACT), make_batch(np.arange(30)))
    rng = jax.random.PRNGKey(4)

    def reward_fn(obs, next_obs, key):
        return next_obs[:, 0] - obs[:, 0] + jax.random.uniform(key)

    out = replay.relabel(buf, reward_fn, rng, 8, groups=2)
    key = lambda i, g: jax.random.fold_in(jax.random.fold_in(rng, i), g)
    d = [[float(jax.random.uniform(key(i, g))) for g in range(2)] for i in range(3)]
    want = np.zeros(40, np.float32)
    want[:20] = 1000 + np.array([d[0][0]] * 8 + [d[1][0]] * 4 + [d[2][0]] * 8)
    want[20:36] = 1000 + np.array([d[0][1]] * 8 + [d[1][1]] * 4 + [d[2][1]] * 4)
    new = np.asarray(out.data.reward)
    np.testing.assert_allclose(new[:30], want[:30], rtol=1e-6)
    np.testing.assert_array_equal(new[30:], np.asarray(buf.data.reward)[30:])
    with pytest.raises(ValueError, match="groups=3"):
        replay.relabel(buf, reward_fn, rng, 8, groups=3)


def test_relabel_inactive_runs_no_step_even_when_vmapped_over_seeds():
    """Under a vmap over seeds a lax.cond runs both branches; `active` must keep an iteration
    that does not retrain from relabelling (the trainer calls relabel on every iteration)."""
    one = replay.insert(replay.init(40, OBS, ACT), make_batch(np.arange(30)))
    bufs = jax.tree.map(lambda x: jnp.stack([x, x]), one)
    executed = []

    def reward_fn(obs, next_obs, key):
        jax.debug.callback(lambda: executed.append(1))
        return next_obs[:, 0] - obs[:, 0]

    run = jax.jit(
        jax.vmap(lambda b, a: replay.relabel(b, reward_fn, jax.random.PRNGKey(0), 8, active=a))
    )
    out = jax.block_until_ready(run(bufs, jnp.array([False, False])))
    assert executed == []
    np.testing.assert_array_equal(out.data.reward, bufs.data.reward)
    out = jax.block_until_ready(run(bufs, jnp.array([True, False])))
    assert len(executed) > 0
    np.testing.assert_allclose(np.asarray(out.data.reward)[0, :30], 1000.0)
    np.testing.assert_array_equal(out.data.reward[1], bufs.data.reward[1])  # inactive seed
