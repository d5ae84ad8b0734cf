"""meta-NML: exactness against naive CNML, MAML gradients, and CNML's behaviour on toy data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mural_jax import replay as replay_lib
from mural_jax.config import ClassifierConfig, MetaNMLConfig
from mural_jax.envs import make_env
from mural_jax.rewards import classifier, cnml, meta_nml
from mural_jax.rewards.meta_nml import MetaNML
from mural_jax.rewards.tasks import (
    cnml_normalise,
    kernel_weights,
    query_weight,
    reference_set,
    support_weights,
)
from mural_jax.rewards.vice import Vice


def _random_problem(seed, d, hidden, n_query, m):
    ks = jax.random.split(jax.random.PRNGKey(seed), 5)
    params = classifier.init(ks[0], d, hidden)
    # Non-zero biases so the bias part of the update is exercised too.
    params = [
        {**p, "b": 0.3 * jax.random.normal(k, p["b"].shape)}
        for p, k in zip(params, jax.random.split(ks[4], len(params)), strict=True)
    ]
    queries = 2.0 * jax.random.normal(ks[1], (n_query, d))
    ref_x = 2.0 * jax.random.normal(ks[2], (m, d))
    ref_y = jax.random.bernoulli(ks[3], 0.5, (m,)).astype(jnp.int32)
    return params, queries, ref_x, ref_y


@pytest.mark.parametrize(
    "seed,d,hidden,m,lr,thresh,qw",
    [
        (0, 2, (32, 32), 63, 0.01, 0.5, 1 / 32),
        (1, 2, (32, 32), 63, 1.0, 0.5, 1 / 32),  # large step: any mistake shows
        (2, 3, (16, 8, 24), 7, 0.5, 2.0, 0.25),
        (3, 5, (40,), 20, 2.0, 1.0, 1.0),
        (4, 2, (), 10, 1.0, 0.5, 0.5),  # no hidden layer: logistic regression
    ],
)
def test_fast_equals_naive_cnml(seed, d, hidden, m, lr, thresh, qw):
    params, queries, ref_x, ref_y = _random_problem(seed, d, hidden, 24, m)
    lp1, lp0 = meta_nml.cnml_log_likelihoods(
        params, queries, ref_x, ref_y, lr=lr, thresh=thresh, q_weight=qw
    )
    p1, p0, r = cnml.naive_cnml(
        params, queries, ref_x, ref_y, lr=lr, dist_weight_thresh=thresh, query_weight=qw
    )
    np.testing.assert_allclose(np.exp(lp1), p1, atol=1e-5)
    np.testing.assert_allclose(np.exp(lp0), p0, atol=1e-5)
    np.testing.assert_allclose(cnml_normalise(lp1, lp0, "prob"), r, atol=1e-5)
    # The adaptation really moved the classifier (otherwise agreement would be trivial).
    p_plain = jax.nn.softmax(classifier.logits(params, queries))
    assert np.max(np.abs(np.asarray(p1) - np.asarray(p_plain[:, 1]))) > 1e-3


def test_query_alone_matches_naive_with_empty_support():
    params, queries, ref_x, ref_y = _random_problem(4, 2, (16, 16), 10, 5)
    lp1, lp0 = meta_nml.cnml_log_likelihoods(
        params, queries, ref_x, ref_y, lr=0.5, thresh=0.5, q_weight=1 / 32, use_refs=False
    )
    for i, q in enumerate(queries):
        for y, lp in ((1, lp1), (0, lp0)):
            p = cnml.query_likelihood(
                params, q, y, ref_x[:0], ref_y[:0], jnp.zeros((0,)), 1 / 32, 0.5, 1
            )
            np.testing.assert_allclose(np.exp(lp[i]), p, atol=1e-5)


def test_chunked_inference_matches_naive_and_reward_types():
    """MetaNML.likelihoods over chunks (pool = one support, any order) equals naive CNML."""
    task = make_env("zigzag_maze")
    mcfg = MetaNMLConfig(support_size=9, inference_chunk=4, inner_lr=0.5)
    method = MetaNML(task, ClassifierConfig(hidden=(16, 16), reference_size=8), mcfg)
    params, queries, ref_x, ref_y = _random_problem(5, 2, (16, 16), 10, 8)
    state = method.init(jax.random.PRNGKey(0), jnp.zeros((3, 2)))
    state = state.replace(params=params, pool_x=ref_x, pool_y=ref_y, meta_epochs=jnp.ones((), int))
    lp1, lp0 = jax.jit(method.likelihoods)(state, queries, jax.random.PRNGKey(1))
    p1, p0, _ = cnml.naive_cnml(
        params,
        queries,
        ref_x,
        ref_y,
        lr=0.5,
        dist_weight_thresh=0.5,
        query_weight=method.query_weight,
    )
    np.testing.assert_allclose(np.exp(lp1), p1, atol=1e-5)
    np.testing.assert_allclose(np.exp(lp0), p0, atol=1e-5)
    r = method.reward(state, None, queries, jax.random.PRNGKey(1))
    assert r.shape == (10,) and np.all((r > 0) & (r < 1))
    q1, q0, r2 = method.cnml_reward(state, queries, jax.random.PRNGKey(1))
    np.testing.assert_allclose(q1, p1, atol=1e-5)
    np.testing.assert_allclose(q0, p0, atol=1e-5)
    np.testing.assert_allclose(r2, np.asarray(p1) / (np.asarray(p1) + np.asarray(p0)), atol=1e-5)
    np.testing.assert_allclose(r2, r, atol=1e-6)
    log_method = MetaNML(
        task, ClassifierConfig(hidden=(16, 16), reference_size=8, reward_type="log_prob"), mcfg
    )
    log_r = log_method.reward(state, None, queries, jax.random.PRNGKey(1))
    np.testing.assert_allclose(np.exp(log_r), r, atol=1e-5)


def test_each_chunk_adapts_on_its_own_random_window_of_the_pool():
    """A pool larger than a support: each chunk of queries gets support_size - 1 consecutive
    points (cyclically) of the pool from its own key, and equals naive CNML on exactly those."""
    task = make_env("zigzag_maze")
    mcfg = MetaNMLConfig(support_size=9, inference_chunk=4, inner_lr=0.5)
    method = MetaNML(task, ClassifierConfig(hidden=(16, 16), reference_size=32), mcfg)
    params, queries, pool_x, pool_y = _random_problem(8, 2, (16, 16), 12, 32)
    state = method.init(jax.random.PRNGKey(0), jnp.zeros((3, 2)))
    state = state.replace(
        params=params, pool_x=pool_x, pool_y=pool_y, meta_epochs=jnp.ones((), int)
    )
    rng = jax.random.PRNGKey(3)
    lp1, lp0 = jax.jit(method.likelihoods)(state, queries, rng)
    starts = []
    for c, key in enumerate(jax.random.split(rng, 3)):
        start = int(jax.random.randint(key, (), 0, 32))
        idx = (start + np.arange(8)) % 32
        assert len(set(idx.tolist())) == 8  # no point twice, also across the wrap
        rows = slice(4 * c, 4 * c + 4)
        p1, p0, _ = cnml.naive_cnml(
            params, queries[rows], pool_x[idx], pool_y[idx], lr=0.5,
            dist_weight_thresh=0.5, query_weight=method.query_weight,
        )  # fmt: skip
        np.testing.assert_allclose(np.exp(lp1[rows]), p1, atol=1e-5)
        np.testing.assert_allclose(np.exp(lp0[rows]), p0, atol=1e-5)
        starts.append(start)
    assert len(set(starts)) > 1, starts  # the chunks drew different windows


def test_task_construction_closed_forms():
    """The kernel, the query weight and the reference set, against the reference's numbers
    (the naive CNML oracle shares these helpers, so they are checked on their own here)."""
    q = jnp.array([[0.0, 0.0], [1.0, 2.0]])
    x = jnp.array([[0.5, 0.0], [0.0, 0.0], [4.0, 6.0]])
    w = np.asarray(kernel_weights(q, x, 0.5))
    dist = np.linalg.norm(np.asarray(q)[:, None] - np.asarray(x)[None], axis=-1)
    np.testing.assert_allclose(w, np.exp(-2.3 * dist / 0.5), rtol=1e-5)
    assert abs(w[0, 0] - 0.1) < 1e-3 and abs(w[0, 1] - 1.0) < 1e-5  # 0.1 at the threshold
    np.testing.assert_allclose(support_weights(q[1], x, 0.5), w[1], rtol=1e-6)
    assert query_weight(1.0, 2048, 64) == 1 / 32 and query_weight(2.0, 2048, 64) == 1 / 16
    assert query_weight(1.0, 100, 64) == 1 / 2  # ceil(100 / 64)
    visited = jnp.arange(40.0).reshape(20, 2)
    z = jnp.zeros((20,))
    buf = replay_lib.insert(
        replay_lib.init(64, 2, 2),
        replay_lib.Transition(visited, jnp.zeros((20, 2)), z, visited, z, z),
    )
    success = 100.0 + jnp.arange(10.0).reshape(5, 2)
    ref_x, ref_y = reference_set(jax.random.PRNGKey(0), buf, success, lambda o: o, 16)
    ref_x, ref_y = np.asarray(ref_x), np.asarray(ref_y)
    assert ref_y.tolist() == [0] * 8 + [1] * 8
    rows = lambda a: {tuple(r) for r in np.asarray(a).tolist()}  # noqa: E731
    assert rows(ref_x[:8]) <= rows(visited) and rows(ref_x[8:]) <= rows(success)


def _naive_task_loss(method, params, q, y, sup_x, sup_y, outer_x, outer_y):
    """MAML outer loss with materialised adapted parameters (jax.grad inner step)."""
    cfg = method.config
    w_sup = support_weights(q, sup_x, cfg.dist_weight_thresh)
    x = jnp.concatenate([q[None], sup_x])
    labels = jnp.concatenate([jnp.asarray(y)[None], sup_y])
    w = jnp.concatenate([jnp.asarray(method.query_weight)[None], w_sup])
    adapted = cnml.adapt(params, x, labels, w, cfg.inner_lr, 1)
    ox = jnp.concatenate([outer_x, q[None]])
    oy = jnp.concatenate([outer_y, jnp.asarray(y)[None]])
    # The outer set holds the query at query_point_weight / 2 (the original's).
    q_outer = jnp.full((1,), cfg.query_point_weight / 2)
    ow = jnp.concatenate([support_weights(q, outer_x, cfg.dist_weight_thresh), q_outer])
    return classifier.weighted_xent(adapted, ox, oy, ow)


@pytest.mark.parametrize("second_order, qpw", [(True, 1.0), (False, 1.0), (True, 2.0)])
def test_maml_loss_and_gradient_match_naive(second_order, qpw):
    task = make_env("zigzag_maze")
    mcfg = MetaNMLConfig(inner_lr=0.7, second_order=second_order, query_point_weight=qpw)
    method = MetaNML(task, ClassifierConfig(hidden=(24, 24)), mcfg)
    params, _, sup_x, sup_y = _random_problem(6, 2, (24, 24), 1, 15)
    _, queries, outer_x, outer_y = _random_problem(7, 2, (24, 24), 1, 40)
    q, y = queries[0], 1
    fast = method.task_loss(params, q, y, sup_x, sup_y, outer_x, outer_y)
    slow = _naive_task_loss(method, params, q, y, sup_x, sup_y, outer_x, outer_y)
    np.testing.assert_allclose(fast, slow, rtol=1e-5)
    g_fast = jax.grad(method.task_loss)(params, q, y, sup_x, sup_y, outer_x, outer_y)
    if second_order:
        g_ref = jax.grad(_naive_task_loss, argnums=1)(
            method, params, q, y, sup_x, sup_y, outer_x, outer_y
        )
    else:  # first order: gradient of the outer loss at the adapted parameters
        x = jnp.concatenate([q[None], sup_x])
        labels = jnp.concatenate([jnp.asarray(y)[None], sup_y])
        w = jnp.concatenate(
            [
                jnp.asarray(method.query_weight)[None],
                support_weights(q, sup_x, mcfg.dist_weight_thresh),
            ]
        )
        adapted = cnml.adapt(params, x, labels, w, mcfg.inner_lr, 1)
        ox = jnp.concatenate([outer_x, q[None]])
        oy = jnp.concatenate([outer_y, jnp.asarray(y)[None]])
        ow = jnp.concatenate(
            [support_weights(q, outer_x, mcfg.dist_weight_thresh), jnp.full((1,), qpw / 2)]
        )
        g_ref = jax.grad(classifier.weighted_xent)(adapted, ox, oy, ow)
    for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_ref), strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)


# -- Behaviour on a 2D toy dataset ------------------------------------------------------------


@pytest.fixture(scope="module")
def toy():
    """Success examples at (3, 3); many visited failure states around (-3, -3)."""
    task = make_env("zigzag_maze")
    succ = jnp.array([3.0, 3.0]) + 0.05 * jax.random.normal(jax.random.PRNGKey(0), (150, 2))
    visited = jnp.array([-3.0, -3.0]) + 0.5 * jax.random.normal(jax.random.PRNGKey(1), (2000, 2))
    z = jnp.zeros((2000,))
    buf = replay_lib.insert(
        replay_lib.init(4096, 2, 2),
        replay_lib.Transition(visited, jnp.zeros((2000, 2)), z, visited, z, z),
    )
    ccfg = ClassifierConfig(hidden=(64, 64), reference_size=512)
    mural = MetaNML(task, ccfg, MetaNMLConfig())
    state0 = mural.init(jax.random.PRNGKey(2), succ)
    update = jax.jit(mural.update)
    state, info = update(state0, buf, jax.random.PRNGKey(3), 60)
    vice = Vice(task, ccfg)
    vstate, _ = jax.jit(vice.update)(
        vice.init(jax.random.PRNGKey(2), succ), buf, jax.random.PRNGKey(3), 20
    )
    return dict(
        task=task,
        mural=mural,
        state0=state0,
        state=state,
        info=info,
        buf=buf,
        vice=vice,
        vstate=vstate,
        succ=succ,
        update=update,
    )


QUERIES = jnp.array([[3.0, 3.0], [-3.0, -3.0], [3.0, -3.0], [-3.0, 3.0]])


def test_cnml_reward_is_optimistic_where_unexplored(toy):
    r = np.asarray(toy["mural"].reward(toy["state"], None, QUERIES, jax.random.PRNGKey(4)))
    success, failure, far1, far2 = r
    assert success > 0.8, r
    assert failure < 0.1, r
    assert abs(far1 - 0.5) < 0.1 and abs(far2 - 0.5) < 0.1, r
    assert float(toy["info"]["meta_epochs"]) == 60


def test_plain_classifier_is_not_optimistic(toy):
    r = np.asarray(toy["vice"].reward(toy["vstate"], None, QUERIES, None))
    assert r[0] > 0.9 and r[1] < 0.1, r
    # The point of CNML: the plain classifier is confident about states it never saw.
    assert max(abs(r[2] - 0.5), abs(r[3] - 0.5)) > 0.1, r


def test_meta_training_lowers_held_out_post_adaptation_loss(toy):
    """Held-out tasks (fresh queries, labels, supports): meta-trained init adapts better."""
    mural, buf = toy["mural"], toy["buf"]
    from mural_jax.rewards.tasks import reference_set

    ref_x, ref_y = reference_set(
        jax.random.PRNGKey(99),
        buf,
        toy["succ"],
        lambda x: x,
        mural.classifier_config.reference_size,
    )

    def held_out_loss(params):
        s = toy["state0"].replace(params=params)
        q, y, sx, sy = mural._sample_tasks(jax.random.PRNGKey(123), s, buf, ref_x, ref_y)
        losses = jax.vmap(mural.task_loss, in_axes=(None, 0, 0, 0, 0, None, None))(
            params, q, y, sx, sy, ref_x, ref_y
        )
        return float(losses.mean())

    before, after = held_out_loss(toy["state0"].params), held_out_loss(toy["state"].params)
    assert after < 0.5 * before, (before, after)


def test_update_with_zero_epochs_is_identity_and_compiled_once(toy):
    state, info = toy["update"](toy["state"], toy["buf"], jax.random.PRNGKey(5), 0)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(toy["state"]), strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.isnan(float(info["meta_loss"]))  # nothing trained: no loss to report
    assert toy["update"]._cache_size() == 1


def test_tasks_per_step_averages_the_tasks_gradients_in_one_adam_step(toy):
    """tasks_per_step 4 of tasks_per_epoch 4: one Adam step on the mean of the four tasks'
    MAML gradients (the original takes one step per task)."""
    import dataclasses

    import optax

    base = toy["mural"]
    mural = dataclasses.replace(
        base, config=dataclasses.replace(base.config, tasks_per_epoch=4, tasks_per_step=4)
    )
    state, buf, rng = toy["state0"], toy["buf"], jax.random.PRNGKey(21)
    new, loss = jax.jit(mural.meta_epoch)(state, buf, rng)
    k_ref, k_tasks = jax.random.split(rng)
    ref_x, ref_y = reference_set(
        k_ref, buf, state.success_features, mural.task.classifier_features,
        mural.classifier_config.reference_size,
    )  # fmt: skip
    q, y, sx, sy = mural._sample_tasks(k_tasks, state, buf, ref_x, ref_y)

    def mean_loss(p):
        losses = jax.vmap(mural.task_loss, in_axes=(None, 0, 0, 0, 0, None, None))(
            p, q, y, sx, sy, ref_x, ref_y
        )
        return losses.mean()

    want_loss, grads = jax.value_and_grad(mean_loss)(state.params)
    updates, _ = mural.optimizer.update(grads, state.opt_state, state.params)
    want = optax.apply_updates(state.params, updates)
    np.testing.assert_allclose(float(loss), float(want_loss), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert int(new.opt_state[0].count) == 1  # one Adam step, not four


def test_update_reports_the_mean_meta_loss_of_its_epochs(toy):
    """Two meta-epochs in one update: the same state as two single epochs, and the logged
    meta_loss is their mean (not only the last epoch's)."""
    mural, buf, rng = toy["mural"], toy["buf"], jax.random.PRNGKey(11)
    state, info = toy["update"](toy["state"], buf, rng, 2)
    s, losses = toy["state"], []
    epoch = jax.jit(mural.meta_epoch)
    for i in range(2):
        s, loss = epoch(s, buf, jax.random.fold_in(rng, i))
        losses.append(float(loss))
    assert losses[0] != losses[1]
    np.testing.assert_allclose(float(info["meta_loss"]), np.mean(losses), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(s), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("balanced", [False, True])
def test_meta_training_queries_novel_fraction(toy, balanced):
    """novel_query_fraction moves that many replay queries off the data; the rest are unchanged
    (the original's construction at fraction 0, the same random streams)."""
    import dataclasses

    base = dataclasses.replace(toy["mural"].config, num_query_points=64, balanced_queries=balanced)
    make = lambda frac: dataclasses.replace(  # noqa: E731
        toy["mural"], config=dataclasses.replace(base, novel_query_fraction=frac)
    )
    key, state, buf = jax.random.PRNGKey(7), toy["state"], toy["buf"]
    plain = np.asarray(make(0.0).meta_training_queries(key, state, buf))
    novel = np.asarray(make(0.25).meta_training_queries(key, state, buf))
    visited = np.asarray(buf.data.obs)[: int(buf.size)]

    def on_data(x, pts):  # each row of x is one of pts (exactly)
        return np.min(np.abs(x[:, None, :] - pts[None]).sum(-1), axis=1) == 0

    moved = np.any(plain != novel, axis=1)
    assert moved.sum() == 16 and moved[-16:].all(), moved
    assert on_data(plain, visited).sum() == (32 if balanced else 64)
    assert not on_data(novel[moved], visited).any()
    if balanced:
        assert on_data(novel[:32], np.asarray(state.success_features)).all()
    # Moved by noise of novel_query_scale (1.0): a typical distance near sqrt(2).
    assert 0.5 < np.median(np.linalg.norm(novel[moved] - plain[moved], axis=1)) < 2.5


def test_reinit_every_starts_the_initialisation_afresh(toy):
    """reinit_every: an update reaching a multiple of it forgets the old initialisation (the
    result does not depend on it) and runs initial_epochs uncounted catch-up epochs; other
    updates are the plain ones, compiled once for both."""
    import dataclasses

    mural = dataclasses.replace(
        toy["mural"], config=dataclasses.replace(toy["mural"].config, reinit_every=4)
    )
    update = jax.jit(mural.update)
    buf, key = toy["buf"], jax.random.PRNGKey(7)
    trained = toy["state"].replace(meta_epochs=jnp.asarray(63, jnp.int32))  # next: 64 = 16 x 4
    other = trained.replace(params=toy["state0"].params, opt_state=toy["state0"].opt_state)

    # Crossing 64: the same result from either initialisation, and 1 counted epoch.
    a, info = update(trained, buf, key, 1)
    b, _ = update(other, buf, key, 1)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert int(a.meta_epochs) == 64 and float(info["meta_epochs"]) == 64
    # That is: a fresh initialisation, then the counted epoch and initial_epochs catch-up ones.
    fresh = mural._fresh(trained, key)
    epoch = jax.jit(mural.meta_epoch)
    for i in range(1 + mural.classifier_config.initial_epochs):
        fresh, _ = epoch(fresh, buf, jax.random.fold_in(key, i))
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(fresh.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    # It is not the plain update: that one continues from the old initialisation.
    plain, _ = jax.jit(toy["mural"].update)(trained, buf, key, 1)
    assert not np.allclose(np.asarray(a.params[0]["w"]), np.asarray(plain.params[0]["w"]))
    # The fresh init after its catch-up epochs is CNML-optimistic where unexplored.
    r = np.asarray(mural.reward(a, None, QUERIES, jax.random.PRNGKey(4)))
    # (0.79-1.00 at the success example over other keys: the margin is the key's, not the method's)
    assert r[0] > 0.7 and r[1] < 0.2 and abs(r[2] - 0.5) < 0.1, r

    # Not crossing (65 -> 66): the plain update, and the old initialisation matters.
    s65 = trained.replace(meta_epochs=jnp.asarray(65, jnp.int32))
    c, _ = update(s65, buf, key, 1)
    d, _ = jax.jit(toy["mural"].update)(s65, buf, key, 1)
    for x, y in zip(jax.tree.leaves(c), jax.tree.leaves(d), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    assert int(c.meta_epochs) == 66
    # No meta-training on this iteration (epochs 0, even at a multiple): nothing changes.
    e, _ = update(a, buf, key, 0)
    for x, y in zip(jax.tree.leaves(e), jax.tree.leaves(a), strict=True):
        np.testing.assert_array_equal(x, y)
    assert update._cache_size() == 1
