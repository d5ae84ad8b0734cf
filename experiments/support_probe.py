"""What sets MURAL's reward at a maze point: the support's visited states or the query alone?

Loads the latest checkpoint of a reproduction's `mural` seeds and prints, per seed and probe
point, the meta-trained classifier's own p(1|q) and the CNML reward computed three ways:
with supports drawn from the run's reference pool (as in training; averaged over 8 draws),
with a support of success examples only (no visited state can pull the reward down), and with
the query alone (a support of one point at zero kernel weight).

    python -m experiments.support_probe runs/spiral_s256b_ups1_300k_seeds6to8

If the pool and query-alone columns agree at a never-visited point, the visited states in the
support are not what sets its reward there; the one adaptation step from the initialisation is.
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
    """
    base = config_lib.load_experiment(os.path.join(run, "config.json"))
    novel = dataclasses.replace(base.meta_nml, novel_query_fraction=novel_queries or 0.0)
    novel.validate()  # before the (slow) restore
    cfg, trainer, state, seeds = load_latest(run, "mural")
    method = trainer.method
    if novel_queries is not None:
        method = dataclasses.replace(method, config=novel)
    if width is not None:
        if width < 1 or not meta_epochs:
            raise ValueError(f"width={width} needs width >= 1 and meta_epochs >= 1")
        method, state = _widened(method, state, width, inner_lr)
        inner_lr = None  # _widened has set the scaled (or given) rate
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
    """`method` at hidden (width, width) and `state` with fresh, untrained classifiers."""
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


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a reproduction folder with mural/checkpoints (spiral_maze)")
    p.add_argument(
        "--inner-lr", type=float, default=None, help="read with this inner lr (default: the run's)"
    )
    p.add_argument(
        "--meta-epochs", type=int, default=0,
        help="first continue meta-training on each seed's replay for this many meta-epochs",
    )  # fmt: skip
    p.add_argument(
        "--novel-queries", type=float, default=None,
        help="meta_nml.novel_query_fraction for --meta-epochs (default: the run's)",
    )  # fmt: skip
    p.add_argument(
        "--width", type=int, default=None,
        help="start the classifier afresh at this width and meta-train it for --meta-epochs",
    )  # fmt: skip
    args = p.parse_args(argv)
    steps, rows = probe(
        args.run,
        inner_lr=args.inner_lr,
        meta_epochs=args.meta_epochs,
        novel_queries=args.novel_queries,
        width=args.width,
    )
    lr = "the run's inner lr" if args.inner_lr is None else f"inner lr {args.inner_lr}"
    if args.width is not None and args.inner_lr is None:
        lr = "the run's inner lr x run width / width"
    more = f", then {args.meta_epochs} meta-epochs" if args.meta_epochs else ""
    if args.width is not None:
        more = f", a fresh width-{args.width} classifier meta-trained {args.meta_epochs} epochs"
    if args.meta_epochs and args.novel_queries is not None:
        more += f" with novel_query_fraction {args.novel_queries}"
    print(f"{args.run}, checkpoint at env step {steps}{more}, {lr}")
    print("| seed | point | p_init(1) | CNML, pool supports | positives only | query alone |")
    print("|---|---|---|---|---|---|")
    for seed, name, *vals in rows:
        print(f"| {seed} | {name} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")


if __name__ == "__main__":
    main()
