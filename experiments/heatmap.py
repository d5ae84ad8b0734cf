"""Reward over the whole maze, MURAL vs VICE side by side, at a few points in training.

    python -m experiments.heatmap --config zigzag_maze_cpu --steps 24000 --at 3000,12000,24000 \
        --out docs/results/zigzag_heatmap.png

Trains one seed of each method with the same config and, at the given env steps, evaluates the
learned reward r(s) on a grid over the arena (walls drawn, visited states and success examples
overlaid). MURAL's reward should stay near 0.5 where the agent has not been; VICE's need not.

Every seed of finished (or checkpointed) reproductions, one row per run, at the latest
checkpoint (`--methods vice` for VICE's):

    python -m experiments.heatmap --runs runs/spiral_a runs/spiral_b --out maps.png

`--value` maps the SAC critic instead (any method, `sparse` and `dense` too): V(s) = min of the
twin Q at the policy's mode action, each panel scaled to its own range, with the mode action
drawn as arrows. It shows where the critic carries value across a wall.
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

from mural_jax import config as config_lib
from mural_jax.train import make_train


def _grid(trainer, n: int, inset: bool = False):
    """An n x n grid over the arena: (xs, points (n * n, 2)); `inset` leaves out the border."""
    lo, hi = trainer.task.layout.bounds
    xs = np.linspace(lo, hi, n + 2)[1:-1] if inset else np.linspace(lo, hi, n)
    gx, gy = np.meshgrid(xs, xs)
    return xs, jnp.asarray(np.stack([gx.ravel(), gy.ravel()], -1), jnp.float32)


def reward_grid(trainer, state, reward_fn=None, n: int = 81):
    """Learned reward on an n x n grid over the arena: (xs, ys, r[y, x]).

    Pass `reward_fn = jax.jit(trainer.method.reward)` when calling repeatedly (compiled once).
    """
    xs, pts = _grid(trainer, n)
    reward_fn = reward_fn or jax.jit(trainer.method.reward)
    r = reward_fn(state.reward, pts, pts, jax.random.PRNGKey(0))
    return xs, xs, np.asarray(r).reshape(n, n)


def value_grid(trainer, state, n: int = 81):
    """SAC critic's value on an n x n grid: (xs, ys, v[y, x]), v = min_i Q_i(s, mode action)."""
    xs, pts = _grid(trainer, n)
    agent = trainer.agent
    action = agent.act(state.sac, pts, None)
    v = agent.nets.q.apply(state.sac.q_params, pts, action).min(-1)
    return xs, xs, np.asarray(v).reshape(n, n)


def policy_arrows(trainer, state, n: int = 17):
    """The policy's mode action on a coarse n x n grid: (x, y, ax, ay), each of shape (n, n)."""
    _, pts = _grid(trainer, n, inset=True)
    p, a = np.asarray(pts).reshape(n, n, 2), np.asarray(trainer.agent.act(state.sac, pts, None))
    return p[..., 0], p[..., 1], a[:, 0].reshape(n, n), a[:, 1].reshape(n, n)


def visited_sample(state, n: int = 2000) -> np.ndarray:
    """Up to `n` visited states (next_obs) from one seed's replay; the same draw every call."""
    size = int(state.replay.size)
    idx = np.random.default_rng(0).choice(size, min(size, n), replace=False)
    return np.asarray(state.replay.data.next_obs)[idx]


def snapshots(cfg, at: list[int]):
    """Train `cfg` and collect (env_steps, reward grid, visited sample, success rate)."""
    trainer = make_train(cfg)
    run = jax.jit(trainer.run_chunk)
    reward_fn = jax.jit(trainer.method.reward)
    state = trainer.init(jax.random.PRNGKey(cfg.seed))
    shots = []
    for _ in range(trainer.num_chunks):
        state, metrics = run(state)
        steps = int(state.env_steps)
        if steps in at:
            visited = visited_sample(state)
            shots.append(
                (
                    steps,
                    reward_grid(trainer, state, reward_fn),
                    visited,
                    float(metrics["eval/success_rate"]),
                )  # fmt: skip
            )
            print(f"  {cfg.method} at {steps}: eval success {shots[-1][3]:.2f}", flush=True)
    return trainer, np.asarray(state.success_examples), shots


def _draw(ax, grid, visited, examples, walls, title: str, arrows=None):
    """One map: r(s) (or a critic value, scaled to its range) with visits, examples, walls."""
    xs, ys, r = grid
    if arrows is not None:  # a critic value: its scale is the run's own
        r = (r - r.min()) / max(float(r.max() - r.min()), 1e-12)
    im = ax.imshow(r, origin="lower", extent=[xs[0], xs[-1], ys[0], ys[-1]],
                   vmin=0, vmax=1, cmap="viridis")  # fmt: skip
    ax.scatter(visited[:, 0], visited[:, 1], s=1, c="white", alpha=0.3)
    ax.scatter(examples[:, 0], examples[:, 1], s=4, c="red", marker="*")
    for x0, y0, x1, y1 in walls:
        ax.plot([x0, x1], [y0, y1], color="orange", lw=3)
    if arrows is not None:
        ax.quiver(*arrows, color="black", scale=25, width=0.004)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def _figure(n_rows: int, n_cols: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 3.8 * n_rows))
    return fig, np.atleast_2d(axes).reshape(n_rows, n_cols)


def _save(fig, im, axes, out: str, title: str, label: str = "r(s)") -> None:
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label=label)
    fig.suptitle(title)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")


def plot(results: dict, walls, out: str, title: str) -> None:
    """Methods as columns, the snapshots of training as rows."""
    methods = list(results)
    fig, axes = _figure(len(results[methods[0]][2]), len(methods))
    for col, method in enumerate(methods):
        _, examples, shots = results[method]
        for row, (steps, grid, visited, sr) in enumerate(shots):
            label = f"{method.upper()} reward, {steps} steps (eval success {sr:.2f})"
            im = _draw(axes[row, col], grid, visited, examples, walls, label)
    _save(fig, im, axes, out, title)


def seed_maps(run: str, method: str = "mural", value: bool = False) -> tuple:
    """Every seed's reward map (critic value map with `value`) at a run's latest checkpoint.

    Returns (walls, [(seed, env steps, grid, visited sample, success examples, eval success,
    arrows)]); the eval success is the seed's last row of metrics.csv; `arrows` is the policy's
    mode action (`policy_arrows`) for value maps, else None.
    """
    from experiments.reproduce import load_latest, read_rows

    cfg, trainer, state, seeds = load_latest(run, method)
    reward_fn = None if value else jax.jit(trainer.method.reward)
    maps = []
    for k in range(seeds):
        seed_state = jax.tree.map(lambda x, k=k: x[k], state)
        steps = int(seed_state.env_steps)
        visited = visited_sample(seed_state)
        rows = read_rows(os.path.join(run, method, f"seed{cfg.seed + k}", "metrics.csv"), steps)
        sr = rows[-1]["eval/success_rate"] if rows else float("nan")
        if value:
            grid = value_grid(trainer, seed_state)
            arrows = policy_arrows(trainer, seed_state)
        else:
            grid, arrows = reward_grid(trainer, seed_state, reward_fn), None
        examples = np.asarray(seed_state.success_examples)
        maps.append((cfg.seed + k, steps, grid, visited, examples, sr, arrows))
    return trainer.task.layout.walls, maps


def plot_runs(runs: list[str], out: str, method: str = "mural", value: bool = False) -> list:
    """Reproductions as rows, their seeds as columns, each at its latest checkpoint.

    Returns the maps drawn: `seed_maps(run, method, value)` for each run.
    """
    rows = [seed_maps(run, method, value) for run in runs]
    fig, axes = _figure(len(rows), max(len(maps) for _, maps in rows))
    for ax in axes.ravel():
        ax.axis("off")
    for i, (run, (walls, maps)) in enumerate(zip(runs, rows, strict=True)):
        for j, (seed, steps, grid, visited, examples, sr, arrows) in enumerate(maps):
            axes[i, j].axis("on")
            label = (
                f"{os.path.basename(run.rstrip('/'))}\nseed {seed}, {steps} steps (eval {sr:.2f})"
            )
            im = _draw(axes[i, j], grid, visited, examples, walls, label, arrows)
    if value:
        title = f"{method.upper()}: SAC critic value and policy at the latest checkpoint"
        _save(fig, im, axes, out, title, "V(s), scaled to each map's range")
    else:
        _save(fig, im, axes, out, f"{method.upper()} reward at the latest checkpoint")
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", help="train a seed of each method on this task config")
    p.add_argument(
        "--runs", nargs="+", help="instead, map every seed of these reproductions' checkpoints"
    )
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--at", default=None, help="comma-separated env steps (multiples of eval)")
    p.add_argument("--methods", nargs="+", default=["mural", "vice"])
    p.add_argument(
        "--value", action="store_true", help="with --runs: map the SAC critic and the policy"
    )
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if (args.config is None) == (args.runs is None):
        p.error("give exactly one of --config (train and map) or --runs (map checkpoints)")
    if args.value and not args.runs:
        p.error("--value maps checkpoints: give --runs")
    if args.runs:
        return plot_runs(args.runs, args.out, args.methods[0], args.value)
    base = config_lib.load_experiment(args.config)
    if args.steps:
        base = config_lib.replace(base, {"steps": args.steps})
    at = [int(a) for a in args.at.split(",")] if args.at else [base.steps]
    results = {}
    for method in args.methods:
        cfg = config_lib.replace(base, {"method": method}).validate()
        trainer, examples, shots = snapshots(cfg, at)
        results[method] = (trainer, examples, shots)
    walls = trainer.task.layout.walls
    plot(results, walls, args.out, f"{base.env}: learned reward over the maze")


if __name__ == "__main__":
    main()
