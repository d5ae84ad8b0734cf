"""meta-NML: a MAML-trained classifier adapted in one SGD step to every (query, label) task.

The one-step adaptation has a closed form. The gradient of the weighted loss on a support set
is, for every layer, a sum of outer products, one per support point:

    dL/dW_l = sum_i c_i a_{l-1,i}^T d_{l,i},   dL/db_l = sum_i c_i d_{l,i}

with a the layer inputs, d the backpropagated errors and c_i = w_i / sum(w) the normalised
weights. So the adapted layer applied to an input x is

    x W_l' + b_l' = x W_l + b_l - lr * sum_i c_i (x . a_{l-1,i} + 1) d_{l,i}

and no per-query weight copy is ever formed. The reference points' factors (a, d) do not depend
on the query, so a chunk of queries shares them; each query adds its own rank-one term, and
its two labels differ only by a scalar on that term (d(y) = s_y * backprop((1, -1))).
Meta-training is the other way round: a few tasks, each evaluated on a ~2k-point outer set, so
each task materialises its adapted weights once (`adapted_params`) from the same factors.
Everything here is exact: tests compare it with naive CNML (`cnml.py`) to 1e-5.
"""

from __future__ import annotations

import dataclasses

import chex
import flax.struct
import jax
import jax.numpy as jnp
import optax

from mural_jax import replay as replay_lib
from mural_jax.config import ClassifierConfig, MetaNMLConfig
from mural_jax.envs.base import Task
from mural_jax.rewards import classifier
from mural_jax.rewards.tasks import (
    cnml_normalise,
    kernel_weights,
    query_weight,
    reference_set,
    support_weights,
)


@flax.struct.dataclass
class Factors:
    """Per-layer factors of per-point gradients: inputs[l] (m, h_{l-1}), deltas[l] (m, h_l)."""

    inputs: list
    deltas: list

    def scale(self, s: jax.Array) -> Factors:
        return Factors(self.inputs, [d * s for d in self.deltas])


def _forward(params, x):
    inputs, masks = [], []
    for layer in params[:-1]:
        inputs.append(x)
        z = x @ layer["w"] + layer["b"]
        masks.append(z > 0)
        x = jax.nn.relu(z)
    inputs.append(x)
    return inputs, masks, x @ params[-1]["w"] + params[-1]["b"]


def _backward(params, masks, err):
    """Backpropagate logit errors err (m, 2) to every layer's pre-activations."""
    deltas = [err]
    for layer, mask in zip(reversed(params[1:]), reversed(masks), strict=True):
        deltas.append((deltas[-1] @ layer["w"].T) * mask)
    return deltas[::-1]


def support_factors(params, x: jax.Array, labels: jax.Array) -> Factors:
    """Factors of the cross-entropy gradient of points x (m, d) with hard labels (m,)."""
    inputs, masks, logits = _forward(params, x)
    err = jax.nn.softmax(logits) - jax.nn.one_hot(labels, 2)
    return Factors(inputs, _backward(params, masks, err))


def query_factors(params, q: jax.Array) -> tuple[Factors, jax.Array]:
    """Factors of a query for the error direction (1, -1), and its probabilities p (2,).

    The error for label y is p - onehot(y) = s_y * (1, -1) with s_1 = p_0 and s_0 = -p_1, and
    backprop is linear in the error, so both labels' factors are this one scaled.
    """
    inputs, masks, logits = _forward(params, q[None])
    unit = jnp.array([[1.0, -1.0]], logits.dtype)
    return Factors(inputs, _backward(params, masks, unit)), jax.nn.softmax(logits[0])


def label_scale(p: jax.Array, y) -> jax.Array:
    return jnp.where(y == 1, p[0], -p[1])


def adapted_params(params, groups, lr: float):
    """The parameters after one SGD step on support `groups`, materialised.

    groups: [(Factors, coefficients (m,) or a scalar), ...]; the step is -lr * sum_i c_i
    grad_i, i.e. W_l' = W_l - lr * sum_i c_i a_{l-1,i}^T d_{l,i}. Worth it when many points are
    evaluated under one adaptation (a MAML task's outer set), where per-point support terms
    would cost more than the weight copy.
    """
    out = []
    for i, layer in enumerate(params):
        w, b = layer["w"], layer["b"]
        for f, c in groups:
            c = jnp.broadcast_to(c, f.inputs[i].shape[:1])  # the query's group has a scalar
            w = w - lr * (f.inputs[i] * c[:, None]).T @ f.deltas[i]
            b = b - lr * c @ f.deltas[i]
        out.append({"w": w, "b": b})
    return out


def cnml_log_likelihoods(
    params, queries, ref_x, ref_y, *, lr, thresh, q_weight, use_refs=True, ref_factors=None
):
    """log p_1(1|q) and log p_0(0|q) for queries (B, d) sharing one reference support.

    Batched over queries (b) and both labels (l) with explicit axes: every layer is a few
    GEMMs over the 2B (query, label) rows (B rows for the first layer, whose input does not
    depend on the label), never a weight copy; the 2-logit output layer works on the logit
    difference. (Nested `vmap`s of the one-query form compute the same thing; XLA compiled
    them 1.1-1.6x slower on CPU.) The references' factors are computed once (or passed in as
    `ref_factors` to share them across several calls, e.g. memory chunks). `use_refs=False`
    adapts on the query alone (the original's rule before meta-training).
    """
    chex.assert_rank([queries, ref_x], 2)
    ref = support_factors(params, ref_x, ref_y) if ref_factors is None else ref_factors
    w_ref = kernel_weights(queries, ref_x, thresh)
    w_ref = w_ref * use_refs  # (B, m)
    total = jnp.sum(w_ref, axis=1) + q_weight
    c_ref, c_q = w_ref / total[:, None], q_weight / total
    # The queries' own gradient factors at the shared parameters (see `query_factors`):
    # label y scales the error direction (1, -1) by s_y.
    q_inputs, masks, logits = _forward(params, queries)
    unit = jnp.broadcast_to(jnp.array([1.0, -1.0], logits.dtype), logits.shape)
    q_deltas = _backward(params, masks, unit)
    p = jax.nn.softmax(logits).T
    s_q = c_q[:, None] * jnp.stack([label_scale(p, 1), label_scale(p, 0)], axis=1)  # (B, 2)
    # Hidden layers. The first one's input is the query for both labels, so its reference
    # terms are computed once (label axis of size 1, broadcast against s_q's two labels).
    a = queries[:, None, :]
    for i, layer in enumerate(params[:-1]):
        z = a @ layer["w"] + layer["b"]
        coef_ref = c_ref[:, None, :] * (jnp.einsum("bld,md->blm", a, ref.inputs[i]) + 1.0)
        coef_q = s_q * (jnp.einsum("bld,bd->bl", a, q_inputs[i]) + 1.0)
        z = z - lr * (coef_ref @ ref.deltas[i] + coef_q[..., None] * q_deltas[i][:, None, :])
        a = jax.nn.relu(z)
    # Output layer: only the logit difference u = logit_1 - logit_0 matters, and every point's
    # output error is a multiple e of (1, -1), which moves u by 2 * lr * c * e * (a . r + 1).
    # So the references' terms fold into one vector per query, v = (c_ref * e) @ R, shared by
    # both labels, instead of a dot with every reference point per label.
    last = params[-1]
    chex.assert_shape(last["w"], (None, 2))
    ce = c_ref * (ref.deltas[-1][:, 0] - ref.deltas[-1][:, 1]) / 2.0  # (B, m)
    v = ce @ ref.inputs[-1]  # (B, h)
    a = jnp.broadcast_to(a, (a.shape[0], 2, a.shape[2]))  # still (B, 1, d) if no hidden layer
    u = a @ (last["w"][:, 1] - last["w"][:, 0]) + (last["b"][1] - last["b"][0])
    ref_term = jnp.einsum("blh,bh->bl", a, v) + jnp.sum(ce, axis=1)[:, None]
    q_term = s_q * (jnp.einsum("blh,bh->bl", a, q_inputs[-1]) + 1.0)  # error (1, -1) scaled
    u = u + 2.0 * lr * (ref_term + q_term)  # (B, label 1 then 0)
    chex.assert_shape(u, (queries.shape[0], 2))
    return -jax.nn.softplus(-u[:, 0]), -jax.nn.softplus(u[:, 1])


#: fold_in data for a re-initialisation's key (meta-epoch i uses fold_in(rng, i)).
_REINIT_STREAM = 0x5EED

# -- The reward method ------------------------------------------------------------------------


@flax.struct.dataclass
class MetaNMLState:
    params: list
    opt_state: optax.OptState
    success_features: jax.Array  # success examples in classifier space
    pool_x: jax.Array  # latest reference set (inference supports are drawn from it)
    pool_y: jax.Array
    meta_epochs: jax.Array  # meta-epochs done; 0 = untrained (adapt on the query alone)


@dataclasses.dataclass(frozen=True)
class MetaNML:
    """MURAL's reward: CNML approximated by meta-NML, retrained on the RL schedule."""

    task: Task
    classifier_config: ClassifierConfig
    config: MetaNMLConfig
    learned: bool = True

    @property
    def optimizer(self) -> optax.GradientTransformation:
        return optax.adam(self.config.meta_lr)

    @property
    def query_weight(self) -> float:
        cfg = self.config
        return query_weight(
            cfg.query_point_weight, self.classifier_config.reference_size, cfg.support_size
        )

    def init(self, rng: jax.Array, success_examples: jax.Array) -> MetaNMLState:
        feats = self.task.classifier_features(success_examples)
        params = classifier.init(rng, feats.shape[-1], self.classifier_config.hidden)
        n = self.classifier_config.reference_size
        return MetaNMLState(
            params=params,
            opt_state=self.optimizer.init(params),
            success_features=feats,
            pool_x=jnp.zeros((n, feats.shape[-1]), jnp.float32),
            pool_y=jnp.zeros((n,), jnp.int32),
            meta_epochs=jnp.zeros((), jnp.int32),
        )

    # -- inference --

    def likelihoods(self, state: MetaNMLState, queries: jax.Array, rng: jax.Array):
        """(log p_1(1|q), log p_0(0|q)) for queries (B, d) in classifier space, chunked.

        Each chunk of `inference_chunk` queries draws its own random support of
        support_size - 1 points from the reference pool (the query makes support_size).
        Chunks run sequentially, so one call's memory is bounded by a chunk; a `vmap` of this
        (the training loop's, over an iteration's SAC batches) holds one chunk per batch.
        """
        cfg = self.config
        b, d = queries.shape
        chunk = min(cfg.inference_chunk, b)
        n_chunks = -(-b // chunk)
        pool_size = state.pool_x.shape[0]
        m = min(cfg.support_size - 1, pool_size)

        def run(args):
            qs, key = args
            # The pool is shuffled when drawn, so a random cyclic window of it is a uniformly
            # random subset without replacement (and costs no sort per call).
            idx = (jax.random.randint(key, (), 0, pool_size) + jnp.arange(m)) % pool_size
            return cnml_log_likelihoods(
                state.params,
                qs,
                state.pool_x[idx],
                state.pool_y[idx],
                lr=cfg.inner_lr,
                thresh=cfg.dist_weight_thresh,
                q_weight=self.query_weight,
                use_refs=state.meta_epochs > 0,
            )

        if n_chunks == 1:  # no reshaping: a sharded query axis stays sharded
            return run((queries, rng))
        padded = jnp.zeros((n_chunks * chunk, d), queries.dtype).at[:b].set(queries)
        keys = jax.random.split(rng, n_chunks)
        lp1, lp0 = jax.lax.map(run, (padded.reshape(n_chunks, chunk, d), keys))
        return lp1.reshape(-1)[:b], lp0.reshape(-1)[:b]

    def cnml_reward(self, state: MetaNMLState, queries: jax.Array, rng: jax.Array):
        """For queries (B, d) in classifier space: p_1(1|q), p_0(0|q) and the CNML reward."""
        lp1, lp0 = self.likelihoods(state, queries, rng)
        return (
            jnp.exp(lp1),
            jnp.exp(lp0),
            cnml_normalise(lp1, lp0, self.classifier_config.reward_type),
        )

    def reward(self, state, obs, next_obs, rng):
        del obs
        return self.cnml_reward(state, self.task.classifier_features(next_obs), rng)[2]

    # -- meta-training --

    def _fresh(self, state: MetaNMLState, rng: jax.Array) -> MetaNMLState:
        """`state` with a new initialisation and Adam state (reinit_every)."""
        feats = state.success_features
        params = classifier.init(
            jax.random.fold_in(rng, _REINIT_STREAM), feats.shape[-1], self.classifier_config.hidden
        )
        return state.replace(params=params, opt_state=self.optimizer.init(params))

    def task_loss(self, params, q, y, sup_x, sup_y, outer_x, outer_y):
        """Outer (meta) loss of task (q, y): adapt on the support, evaluate on the outer set."""
        cfg = self.config
        w_sup = support_weights(q, sup_x, cfg.dist_weight_thresh)
        total = jnp.sum(w_sup) + self.query_weight
        sup_f = support_factors(params, sup_x, sup_y)
        q_f, p = query_factors(params, q)
        q_f = q_f.scale(label_scale(p, y))
        if not cfg.second_order:  # first-order MAML: the step is a constant w.r.t. params
            sup_f, q_f = jax.lax.stop_gradient((sup_f, q_f))
        groups = [(sup_f, w_sup / total), (q_f, self.query_weight / total)]
        x = jnp.concatenate([outer_x, q[None]], axis=0)
        labels = jnp.concatenate([outer_y, jnp.asarray(y, jnp.int32)[None]], axis=0)
        w_out = support_weights(q, outer_x, cfg.dist_weight_thresh)
        w = jnp.concatenate([w_out, jnp.full((1,), cfg.query_point_weight / 2.0)])
        # One weight copy per task: the outer set (~2k points) shares one adaptation.
        logits = classifier.logits(adapted_params(params, groups, cfg.inner_lr), x)
        per_point = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1)[:, 0]
        return jnp.sum(w * per_point) / jnp.sum(w)

    def meta_training_queries(self, rng, state, replay) -> jax.Array:
        """num_query_points queries in classifier space: replay states (balanced: the first
        half success examples instead; novel_query_fraction: the last ones moved off the data)."""
        cfg = self.config
        k_q, k_pos = jax.random.split(rng, 5)[:2]  # the streams _sample_tasks has always used
        nq = cfg.num_query_points
        queries = self.task.classifier_features(replay_lib.sample_obs(replay, k_q, nq))
        from_replay = nq - nq // 2 if cfg.balanced_queries else nq
        novel = min(round(cfg.novel_query_fraction * nq), from_replay)
        if novel:  # the last `novel` replay queries, moved off the data
            # fold_in(rng, 5): its own stream (fold_in(k, i) is split(k, n)[i], so a fold of
            # k_q would repeat the bits sample_obs draws from k_q).
            noise = jax.random.normal(jax.random.fold_in(rng, 5), (novel, queries.shape[1]))
            queries = queries.at[nq - novel :].add(cfg.novel_query_scale * noise)
        if cfg.balanced_queries:
            feats = state.success_features
            pos = feats[jax.random.randint(k_pos, (nq // 2,), 0, feats.shape[0])]
            queries = queries.at[: nq // 2].set(pos)
        chex.assert_shape(queries, (nq, state.success_features.shape[1]))
        return queries

    def _sample_tasks(self, rng, state, replay, ref_x, ref_y):
        """tasks_per_epoch tasks from meta_training_queries: queries (t, d), labels (t,), and
        each task's support points (t, m, d) with their labels (t, m)."""
        cfg = self.config
        _, _, k_pick, k_y, k_sup = jax.random.split(rng, 5)
        nq = cfg.num_query_points
        queries = self.meta_training_queries(rng, state, replay)
        t = cfg.tasks_per_epoch
        q = queries[jax.random.randint(k_pick, (t,), 0, nq)]
        y = jax.random.bernoulli(k_y, 0.5, (t,)).astype(jnp.int32)
        m = min(cfg.support_size - 1, ref_x.shape[0])
        idx = jax.vmap(lambda k: jax.random.choice(k, ref_x.shape[0], (m,), replace=False))(
            jax.random.split(k_sup, t)
        )
        return q, y, ref_x[idx], ref_y[idx]

    def meta_epoch(self, state: MetaNMLState, replay, rng) -> tuple[MetaNMLState, jax.Array]:
        """One meta-epoch: fresh reference set, tasks_per_epoch tasks, Adam on the MAML loss."""
        cfg = self.config
        k_ref, k_tasks = jax.random.split(rng)
        ref_x, ref_y = reference_set(
            k_ref,
            replay,
            state.success_features,
            self.task.classifier_features,
            self.classifier_config.reference_size,
        )
        q, y, sup_x, sup_y = self._sample_tasks(k_tasks, state, replay, ref_x, ref_y)
        steps = cfg.tasks_per_epoch // cfg.tasks_per_step
        batches = jax.tree.map(
            lambda a: a.reshape(steps, cfg.tasks_per_step, *a.shape[1:]), (q, y, sup_x, sup_y)
        )

        def batch_loss(params, batch):
            losses = jax.vmap(self.task_loss, in_axes=(None, 0, 0, 0, 0, None, None))(
                params, *batch, ref_x, ref_y
            )
            return losses.mean()

        def adam_step(carry, batch):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(batch_loss)(params, batch)
            updates, opt_state = self.optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(
            adam_step, (state.params, state.opt_state), batches
        )
        # The pool's order: a stream of its own (fold_in(rng, 1) would be k_tasks itself).
        perm = jax.random.permutation(jax.random.fold_in(rng, 2), ref_x.shape[0])
        state = state.replace(
            params=params,
            opt_state=opt_state,
            pool_x=ref_x[perm],
            pool_y=ref_y[perm],
            meta_epochs=state.meta_epochs + 1,
        )
        return state, losses.mean()

    def update(self, state, replay, rng, epochs):
        """Run `epochs` meta-epochs (a traced count: 0 on most RL iterations).

        With reinit_every, an update that reaches a multiple of it first replaces the
        initialisation and its Adam state by fresh ones and runs classifier.initial_epochs
        more meta-epochs, which meta_epochs does not count. The replacement happens inside the
        first meta-epoch, so iterations that do not meta-train pay nothing for it. The reported
        meta_loss is the mean over the epochs run (NaN when none ran).
        """
        every, catch_up = self.config.reinit_every, 0
        if every:
            done = state.meta_epochs
            due = (done > 0) & ((done + epochs) // every > done // every)
            catch_up = jnp.where(due, self.classifier_config.initial_epochs, 0)

        def body(i, carry):
            s, total = carry
            if every:
                s = jax.lax.cond(due & (i == 0), lambda s: self._fresh(s, rng), lambda s: s, s)
            s, loss = self.meta_epoch(s, replay, jax.random.fold_in(rng, i))
            return s, total + loss

        n = epochs + catch_up
        state, total = jax.lax.fori_loop(0, n, body, (state, jnp.zeros((), jnp.float32)))
        if every:
            state = state.replace(meta_epochs=state.meta_epochs - catch_up)
        loss = jnp.where(n > 0, total / jnp.maximum(n, 1), jnp.nan)
        return state, {"meta_loss": loss, "meta_epochs": state.meta_epochs.astype(jnp.float32)}
