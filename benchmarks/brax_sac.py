"""Baseline: Brax's own SAC trainer on our `zigzag_maze` (dense oracle reward), env-steps/s.

brax 0.14.2's SAC trainer calls `jax.device_put_replicated`, which JAX 0.10 removed, so this
runs in its own virtualenv with jax 0.7.2 (`benchmarks/setup_brax_venv.sh` builds `.venv-brax`):

    bash benchmarks/setup_brax_venv.sh
    PYTHONPATH=. .venv-brax/bin/python benchmarks/brax_sac.py --steps 20000 --json OUT.json

The config mirrors ours: 8 envs, batch 128, 128x128 policy and Q networks, lr 1e-3, gamma 0.95,
tau 0.005, 4 gradient updates of 128 per actor step (0.5 updates per env step), 1000 prefill
steps, replay 100k, no observation normalization, reward scale 1, episodes of 100 steps.

Timing: brax prefills the replay buffer, then runs `num_evals - 1` compiled training epochs,
each followed by an evaluation and a `progress_fn` call. The first epoch includes the
compilation, so the reported rate is the env steps between the first and the last post-epoch
`progress_fn` calls over the wall time between them (training plus evaluation, as our own
trainer's steps/s); it needs `--num-evals >= 3`. Brax's own per-epoch `training/sps` (training
only, no evaluation) of the epochs after the first is reported as `train_only_env_steps_per_s`.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20_000, help="total env steps (incl. prefill)")
    p.add_argument("--json", default=None, help="write the result as JSON here")
    p.add_argument("--env", default="zigzag_maze")
    p.add_argument("--num-evals", type=int, default=5, help=">= 3 (first epoch is compile)")
    p.add_argument("--num-eval-envs", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.num_evals < 3:
        p.error("--num-evals must be >= 3: the first training epoch includes the compile")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    load_before = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    if REPO_ROOT not in sys.path:
        sys.path.insert(0, REPO_ROOT)

    import brax
    import jax
    import jax.numpy as jnp
    from brax.training.agents.sac import networks as sac_networks
    from brax.training.agents.sac import train as sac

    from mural_jax.envs import make_env

    task = make_env(args.env, reward="dense")
    episode_length = task.episode_length
    num_envs = 8

    calls: list[tuple[float, int, dict]] = []  # (time, env steps, metrics) per progress_fn

    def progress(step: int, metrics: dict) -> None:
        calls.append((time.perf_counter(), int(step), {k: float(v) for k, v in metrics.items()}))
        print(
            f"  [brax sac] step {int(step):>7d}  "
            f"eval/episode_reward {float(metrics.get('eval/episode_reward', float('nan'))):.2f}  "
            f"training/sps {float(metrics.get('training/sps', float('nan'))):.0f}",
            flush=True,
        )

    t0 = time.perf_counter()
    make_policy, params, final = sac.train(
        environment=task,
        num_timesteps=args.steps,
        episode_length=episode_length,
        action_repeat=1,
        num_envs=num_envs,
        num_eval_envs=args.num_eval_envs,
        learning_rate=1e-3,
        discounting=0.95,
        seed=args.seed,
        batch_size=128,
        num_evals=args.num_evals,
        normalize_observations=False,
        reward_scaling=1.0,
        tau=0.005,
        min_replay_size=1000,
        max_replay_size=100_000,
        grad_updates_per_step=4,
        deterministic_eval=True,
        network_factory=functools.partial(
            sac_networks.make_sac_networks, hidden_layer_sizes=(128, 128)
        ),
        progress_fn=progress,
    )
    total_wall = time.perf_counter() - t0

    # calls[0] is the evaluation before training; calls[1] follows the first (compiling) epoch.
    (t_first, s_first, _), (t_last, s_last, _) = calls[1], calls[-1]
    steps_per_s = (s_last - s_first) / (t_last - t_first)
    later = [m for _, _, m in calls[2:]]
    train_only = len(later) / sum(1.0 / m["training/sps"] for m in later)  # equal-size epochs

    # The final policy on the bare task (deterministic, outside the timing): success and distance.
    policy = make_policy(params, deterministic=True)
    n = args.num_eval_envs

    @jax.jit
    def rollout(rng):
        s0 = jax.vmap(task.reset)(jax.random.split(rng, n))

        def step(s, _):
            action, _ = policy(s.obs, rng)
            return jax.vmap(task.step)(s, action), None

        s, _ = jax.lax.scan(step, s0, None, length=episode_length)
        return task.is_success(s.obs).astype(jnp.float32).mean(), task.goal_distance(s.obs).mean()

    success, distance = rollout(jax.random.PRNGKey(args.seed + 1))

    result = {
        "env_steps_per_s": steps_per_s,
        "steps": int(s_last),
        "jax_version": jax.__version__,
        "brax_version": brax.__version__,
        "eval_reward": float(final.get("eval/episode_reward", float("nan"))),
        "train_only_env_steps_per_s": train_only,
        "timed_env_steps": s_last - s_first,
        "timed_wall_s": t_last - t_first,
        "total_wall_s": total_wall,
        "eval_success_rate": float(success),
        "eval_final_distance": float(distance),
        "env": args.env,
        "reward": "dense",
        "num_envs": num_envs,
        "num_evals": args.num_evals,
        "seed": args.seed,
        "devices": [str(d) for d in jax.devices()],
        "cpu_count": os.cpu_count(),
        "load_avg_before": load_before,  # 1, 5, 15 min; 2+ cores busy means a contended run
        "load_avg_after": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
    }
    print(
        f"brax SAC ({brax.__version__}, jax {jax.__version__}) on {args.env}: "
        f"{steps_per_s:.0f} env-steps/s (train+eval, excl. compile; train only "
        f"{train_only:.0f}), {int(s_last)} steps in {total_wall:.1f}s total, "
        f"eval reward {result['eval_reward']:.2f}, success {float(success):.2f}, "
        f"final distance {float(distance):.2f}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
