"""Controlled probe of MURAL's reward: meta-train on a fixed replay, read the CNML reward.

The RL runs mix two moving parts (the replay grows where the policy goes; meta-training
accumulates). Here the replay is fixed: uniform states in the spiral maze's outer corridors
(bottom and right; with --surround also the top corridor and the inner bottom passage, as a
policy has visited them by ~200k steps), the success examples are the task's, and only the
number of meta-epochs grows. Printed: the mean CNML reward over 64 support draws at a
never-visited point, the goal, and a visited point.

    python -m experiments.reward_probe --surround [--balanced] [--support-size 256]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from mural_jax import replay as replay_lib
from mural_jax.config import ClassifierConfig, MetaNMLConfig
from mural_jax.envs import make_env
from mural_jax.rewards.meta_nml import MetaNML

PROBES = {
    "never visited (-2, 0)": (-2.0, 0.0),
    "goal": (-0.5, 1.25),
    "visited (3, -3)": (3.0, -3.0),
}


def visited_states(rng: jax.Array, n: int, surround: bool) -> jax.Array:
    """Uniform states in the spiral's corridors a policy has swept (see module docstring)."""
    u = jax.random.uniform(rng, (n, 2))
    regions = [
        jnp.stack([-4 + 8 * u[:, 0], -4 + 0.85 * u[:, 1]], -1),  # bottom corridor
        jnp.stack([1.15 + 2.85 * u[:, 0], -4 + 8 * u[:, 1]], -1),  # right corridor
    ]
    if surround:
        regions += [
            jnp.stack([-3 + 7 * u[:, 0], 3.15 + 0.85 * u[:, 1]], -1),  # top corridor
            jnp.stack([-2.85 + 3.7 * u[:, 0], -2.85 + 0.7 * u[:, 1]], -1),  # inner passage
        ]
    which = (jnp.arange(n) % len(regions))[:, None]
    return jnp.select([which == i for i in range(len(regions) - 1)], regions[:-1], regions[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--support-size", type=int, default=256)
    p.add_argument(
        "--balanced",
        action="store_true",
        help="half the meta-training queries from the success examples",
    )
    p.add_argument("--surround", action="store_true", help="visited corridors on three sides")
    p.add_argument("--novel-queries", type=float, default=0.0, help="meta_nml.novel_query_fraction")
    p.add_argument("--novel-scale", type=float, default=1.0, help="meta_nml.novel_query_scale")
    p.add_argument("--inner-lr", type=float, default=0.16)
    p.add_argument("--epochs", default="10,20,50,100,200,300")
    args = p.parse_args(argv)

    task = make_env("spiral_maze")
    mcfg = MetaNMLConfig(
        inner_lr=args.inner_lr,
        support_size=args.support_size,
        balanced_queries=args.balanced,
        novel_query_fraction=args.novel_queries,
        novel_query_scale=args.novel_scale,
        inference_chunk=1,  # every query draws its own support
    )
    method = MetaNML(task, ClassifierConfig(hidden=(128, 128)), mcfg)
    k_obs, k_ex, k_init = jax.random.split(jax.random.PRNGKey(0), 3)
    obs = visited_states(k_obs, 20000, args.surround)
    n = obs.shape[0]
    zeros = jnp.zeros((n,))
    replay = replay_lib.insert(
        replay_lib.init(n, 2, 2),
        replay_lib.Transition(obs, jnp.zeros((n, 2)), zeros, obs, zeros, zeros),
    )
    state = method.init(k_init, task.success_examples(k_ex, 150))
    queries = jnp.repeat(jnp.array(list(PROBES.values())), 64, axis=0)
    ten = jnp.asarray(10, jnp.int32)
    update = jax.jit(lambda s, r: method.update(s, replay, r, ten))
    reward = jax.jit(lambda s, r: method.cnml_reward(s, queries, r)[2])
    print("meta-epochs | " + " | ".join(PROBES))
    done = 0
    for target in map(int, args.epochs.split(",")):
        while done < target:
            state, _ = update(state, jax.random.PRNGKey(done))
            done += 10
        r = np.asarray(reward(state, jax.random.PRNGKey(99))).reshape(len(PROBES), 64).mean(1)
        print(f"{done} | " + " | ".join(f"{v:.2f}" for v in r), flush=True)


if __name__ == "__main__":
    main()
