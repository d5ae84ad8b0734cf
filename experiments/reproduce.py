"""Run methods x seeds of one task config; seeds of a method run as one vmapped program.

    python -m experiments.reproduce --config zigzag_maze_cpu --methods mural vice sparse \
        --seeds 3 --out runs/zigzag_cpu

Writes OUT/METHOD/seedK/metrics.csv, OUT/config.json, OUT/summary.md and OUT/success.png.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np

from mural_jax import config as config_lib
from mural_jax.train import make_train


def run_method(cfg, seeds: int, out: str) -> dict[str, np.ndarray]:
    """Train `seeds` seeds of one config as a single vmapped program; returns metric curves."""
    trainer = make_train(cfg)
    keys = jax.vmap(jax.random.PRNGKey)(cfg.seed + np.arange(seeds))
    state = jax.jit(jax.vmap(trainer.init))(keys)
    run_chunk = jax.jit(jax.vmap(trainer.run_chunk), donate_argnums=0)
    writers = []
    for k in range(seeds):
        os.makedirs(os.path.join(out, f"seed{k}"), exist_ok=True)
        writers.append(open(os.path.join(out, f"seed{k}", "metrics.csv"), "w", newline=""))
    curves: dict[str, list] = {}
    t0 = last = time.time()
    for chunk in range(trainer.num_chunks):
        state, metrics = run_chunk(state)
        metrics = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
        now = time.time()
        metrics["train/steps_per_second"] = np.full(seeds, cfg.eval_every / (now - last))
        last = now
        for k, v in metrics.items():
            curves.setdefault(k, []).append(v)
        for s, f in enumerate(writers):
            row = {k: float(v[s]) for k, v in metrics.items()}
            if chunk == 0:
                cols = ["env_steps"] + sorted(k for k in row if k != "env_steps")
                f.write(",".join(cols) + "\n")
            f.write(",".join(f"{row[c]:.6g}" for c in cols) + "\n")
            f.flush()
        sr = metrics["eval/success_rate"]
        print(
            f"  {cfg.method:>6} [{int(metrics['env_steps'][0]):>7d}/{cfg.steps}] "
            f"success {sr.mean():.2f} (per seed {np.round(sr, 2).tolist()}) "
            f"dist {metrics['eval/final_distance'].mean():.2f}  {now - t0:.0f}s",
            flush=True,
        )
    for f in writers:
        f.close()
    return {k: np.stack(v, axis=0) for k, v in curves.items()}  # (chunks, seeds)


def summarise(results: dict, out: str, title: str) -> None:
    """summary.md (final success: mean, stderr, per seed) and success.png (mean +- stderr)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [
        f"# {title}",
        "",
        "| method | final success (mean +- stderr) | per seed | final distance |",
        "|---|---|---|---|",
    ]
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, curves in results.items():
        steps = curves["env_steps"][:, 0]
        sr = curves["eval/success_rate"]
        mean, se = sr.mean(1), sr.std(1) / np.sqrt(sr.shape[1])
        ax.plot(steps, mean, label=method)
        ax.fill_between(steps, mean - se, mean + se, alpha=0.2)
        final = sr[-1]
        dist = curves["eval/final_distance"][-1]
        lines.append(
            f"| {method} | {final.mean():.2f} +- {final.std() / np.sqrt(len(final)):.2f} | "
            f"{np.round(final, 2).tolist()} | {dist.mean():.2f} |"
        )
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval success rate")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "success.png"), dpi=100)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="experiment name or JSON path")
    p.add_argument("--methods", nargs="+", default=["mural", "vice", "sparse", "dense"])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    base = config_lib.load_experiment(args.config)
    if args.steps:
        base = config_lib.replace(base, {"steps": args.steps})
    if os.path.exists(os.path.join(args.out, "config.json")):
        raise SystemExit(f"error: {args.out} already holds a reproduction; choose a new --out")
    os.makedirs(args.out, exist_ok=True)
    config_lib.save_json(base, os.path.join(args.out, "config.json"))
    results = {}
    for method in args.methods:
        cfg = config_lib.replace(base, {"method": method}).validate()
        print(f"{method}: {args.seeds} seeds vmapped, {cfg.steps} env steps each", flush=True)
        results[method] = run_method(cfg, args.seeds, os.path.join(args.out, method))
        np.savez(
            os.path.join(args.out, method, "curves.npz"),
            **{k.replace("/", "."): v for k, v in results[method].items()},
        )
    summarise(results, args.out, f"{base.env}: {args.seeds} seeds, {base.steps} env steps")
    with open(os.path.join(args.out, "command.json"), "w") as f:
        json.dump({"argv": argv or __import__("sys").argv[1:]}, f)


if __name__ == "__main__":
    main()
