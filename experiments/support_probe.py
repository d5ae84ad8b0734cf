"""What sets MURAL's reward at a maze point: the support's visited states or the query alone?

Loads the latest checkpoint of a reproduction's `mural` seeds and prints, per seed and probe
point, the meta-trained classifier's own p(1|q) and the CNML reward computed three ways:
with supports drawn from the run's reference pool (as in training; averaged over 8 draws),
with a support of success examples only (no visited state can pull the reward down), and with
the query alone (a support of one point at zero kernel weight).

    python -m experiments.support_probe runs/spiral_s256b_ups1_300k_seeds6to8

If the pool and query-alone columns agree at a never-visited point, the visited states in the
support are not what sets its reward there; the one adaptation step from the initialisation is.
The options then ask where that initialisation comes from: continue its meta-training
(--meta-epochs), start one afresh (--width), or replay the run's meta-training over its replay
history from a fresh one (--history), with or without --reinit-every.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from experiments.reproduce import load_latest
from mural_jax import config as config_lib
from mural_jax.rewards import classifier, meta_nml

# Points of the spiral maze (walls in mural_jax/envs/point_maze.py): inside the spiral, the
# goal, and the outer corridors the agents visit.
SPIRAL_POINTS = {
    "inner centre": (-1.0, 0.5),
    "inner lower-left": (-2.0, -1.0),
    "inner lower-right": (0.0, -1.0),
    "inner top": (-1.0, 2.0),
    "goal": (-0.5, 1.25),
    "inner corridor": (-1.5, -2.5),
    "right corridor": (2.5, 0.0),
    "left corridor": (-3.5, 0.0),
    "top corridor": (-1.0, 3.5),
}


def probe(
    run: str,
    points: dict[str, tuple[float, float]] = SPIRAL_POINTS,
    draws: int = 8,
    inner_lr: float | None = None,
    meta_epochs: int = 0,
    novel_queries: float | None = None,
    width: int | None = None,
    history: bool = False,
    reinit_every: int | None = None,
):
    """Rows of (seed, point, p_init, cnml with pool, positives only, query alone).

    `inner_lr` overrides the run's inner learning rate at read time (the initialisation was
    meta-trained for the run's own rate): how far would a larger step reach from this init?
    `meta_epochs` first continues each seed's meta-training on its own replay for that many
    meta-epochs (with meta_nml.novel_query_fraction = `novel_queries` if given): how does the
    reward move with meta-training alone, from the same state?
    `width` instead starts each seed's classifier afresh at hidden (width, width), with the
    inner lr scaled by the run's width / `width` (the paper's 0.01 at 2048 is the CPU
    configs' 0.16 at 128), and meta-trains it on the seed's frozen replay for `meta_epochs`:
    would a wider classifier keep the never-visited interior optimistic?
    `history` starts each seed's classifier afresh (at `width` if given) and meta-trains it
    along the run's own schedule, each meta-epoch on the replay as it was at that env step
    (the buffer is in insertion order): does the run's replay history alone explain its
    classifier? `reinit_every` sets meta_nml.reinit_every for all of this meta-training.
    """
    base = config_lib.load_experiment(os.path.join(run, "config.json"))
    overrides = {}
    if novel_queries is not None:
        overrides["novel_query_fraction"] = novel_queries
    if reinit_every is not None:
        overrides["reinit_every"] = reinit_every
    dataclasses.replace(base.meta_nml, **overrides).validate()  # before the (slow) restore
    if width is not None and (width < 1 or not (meta_epochs or history)):
        raise ValueError(f"width={width} needs width >= 1 and meta_epochs >= 1 or history")
    cfg, trainer, state, seeds = load_latest(run, "mural")
    method = trainer.method
    method = dataclasses.replace(method, config=dataclasses.replace(method.config, **overrides))
    if width is not None or history:
        w = method.classifier_config.hidden[0] if width is None else width
        method, state = _widened(method, state, w, inner_lr)
        inner_lr = None  # _widened has set the scaled (or given) rate
    if history:
        state = _replay_history(cfg, method, state, seeds)
    if meta_epochs:
        epochs = jnp.asarray(meta_epochs, jnp.int32)
        update = jax.vmap(lambda rs, replay, k: method.update(rs, replay, k, epochs)[0])
        rngs = jax.vmap(jax.random.PRNGKey)(np.arange(seeds))
        state = state.replace(reward=jax.jit(update)(state.reward, state.replay, rngs))
    pts = jnp.asarray(list(points.values()), jnp.float32)
    q = method.task.classifier_features(pts)
    n = method.config.support_size - 1
    lr = method.config.inner_lr if inner_lr is None else inner_lr

    def cnml(rs, sup_x, sup_y):
        lp1, lp0 = meta_nml.cnml_log_likelihoods(
            rs.params, q, sup_x, sup_y, lr=lr,
            thresh=method.config.dist_weight_thresh, q_weight=method.query_weight, use_refs=True,
        )  # fmt: skip
        return np.asarray(jax.nn.sigmoid(lp1 - lp0))  # p1 / (p1 + p0)

    rows = []
    for s in range(seeds):
        rs = jax.tree.map(lambda x, s=s: x[s], state.reward)
        p_init = np.asarray(jax.nn.softmax(classifier.logits(rs.params, q))[:, 1])
        pool = rs.pool_x.shape[0]
        starts = np.linspace(0, pool - n, draws).astype(int)
        with_pool = np.mean(
            [cnml(rs, rs.pool_x[a : a + n], rs.pool_y[a : a + n]) for a in starts], 0
        )
        pos = np.asarray(rs.pool_y) == 1
        positives = cnml(rs, rs.pool_x[pos][:n], rs.pool_y[pos][:n])
        alone = cnml(rs, jnp.full((1, q.shape[1]), 1e3), jnp.ones((1,), jnp.int32))
        for k, name in enumerate(points):
            rows.append((cfg.seed + s, name, p_init[k], with_pool[k], positives[k], alone[k]))
    return int(np.asarray(state.env_steps)[0]), rows


def _widened(method, state, width: int, inner_lr: float | None):
    """`method` with every hidden layer at `width` (inner lr scaled unless given) and `state`
    with fresh, untrained classifiers (meta_epochs 0)."""
    ccfg, mcfg = method.classifier_config, method.config
    if inner_lr is None:
        inner_lr = mcfg.inner_lr * ccfg.hidden[0] / width
    method = dataclasses.replace(
        method,
        classifier_config=dataclasses.replace(ccfg, hidden=(width,) * len(ccfg.hidden)),
        config=dataclasses.replace(mcfg, inner_lr=inner_lr),
    )
    seeds, d = state.reward.success_features.shape[0], state.reward.success_features.shape[-1]
    params = jax.vmap(lambda k: classifier.init(k, d, method.classifier_config.hidden))(
        jax.vmap(jax.random.PRNGKey)(np.arange(seeds) + 1000)
    )
    reward = state.reward.replace(
        params=params,
        opt_state=jax.vmap(method.optimizer.init)(params),
        meta_epochs=jnp.zeros_like(state.reward.meta_epochs),
    )
    return method, state.replace(reward=reward)


def _replay_history(cfg, method, state, seeds: int):
    """Meta-train every seed's classifier on the run's schedule (initial epochs once the random
    steps are in, then epochs_per_update every update_every env steps up to the checkpoint),
    each time on the replay truncated to the transitions it held then."""
    ccfg = cfg.classifier
    start = max(cfg.random_steps, cfg.num_envs)
    end = int(np.asarray(state.env_steps)[0])
    ts = jnp.arange((start // ccfg.update_every + 1) * ccfg.update_every, end + 1,
                    ccfg.update_every, dtype=jnp.int32)  # fmt: skip

    def one(rs, replay, key):
        def at(t):  # the replay as it was at env step t (one transition per env step)
            return replay.replace(size=jnp.minimum(t, replay.size))

        rs, _ = method.update(rs, at(start), key, jnp.int32(ccfg.initial_epochs))

        def body(rs, t):
            k = jax.random.fold_in(key, t)
            return method.update(rs, at(t), k, jnp.int32(ccfg.epochs_per_update))[0], None

        return jax.lax.scan(body, rs, ts)[0]

    keys = jax.vmap(jax.random.PRNGKey)(np.arange(seeds) + 2000)
    return state.replace(reward=jax.jit(jax.vmap(one))(state.reward, state.replay, keys))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a reproduction folder with mural/checkpoints (spiral_maze)")
    for flag, kind, default, text in (
        ("--inner-lr", float, None, "read with this inner lr (default: the run's)"),
        ("--meta-epochs", int, 0, "first continue meta-training for this many meta-epochs"),
        ("--novel-queries", float, None, "meta_nml.novel_query_fraction for that meta-training"),
        ("--width", int, None, "start the classifier afresh at this width (needs meta-training)"),
        ("--reinit-every", int, None, "meta_nml.reinit_every for the probe's meta-training"),
    ):
        p.add_argument(flag, type=kind, default=default, help=text)
    p.add_argument(
        "--history", action="store_true",
        help="a fresh classifier meta-trained on the run's schedule over its replay history",
    )  # fmt: skip
    args = p.parse_args(argv)
    steps, rows = probe(
        args.run,
        inner_lr=args.inner_lr,
        meta_epochs=args.meta_epochs,
        novel_queries=args.novel_queries,
        width=args.width,
        history=args.history,
        reinit_every=args.reinit_every,
    )
    lr = "the run's inner lr" if args.inner_lr is None else f"inner lr {args.inner_lr}"
    if args.width is not None and args.inner_lr is None:
        lr = "the run's inner lr x run width / width"
    more = f", then {args.meta_epochs} meta-epochs" if args.meta_epochs else ""
    if args.width is not None or args.history:
        w = "" if args.width is None else f" width-{args.width}"
        how = "along the run's replay history" if args.history else "on the frozen replay"
        more = f", a fresh{w} classifier meta-trained {how}"
        if args.meta_epochs:
            more += f", then {args.meta_epochs} meta-epochs"
    if args.reinit_every is not None:
        more += f" (reinit_every {args.reinit_every})"
    if args.meta_epochs and args.novel_queries is not None:
        more += f" with novel_query_fraction {args.novel_queries}"
    print(f"{args.run}, checkpoint at env step {steps}{more}, {lr}")
    print("| seed | point | p_init(1) | CNML, pool supports | positives only | query alone |")
    print("|---|---|---|---|---|---|")
    for seed, name, *vals in rows:
        print(f"| {seed} | {name} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")


if __name__ == "__main__":
    main()
