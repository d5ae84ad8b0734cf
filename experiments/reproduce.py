"""Run methods x seeds of one task config; seeds of a method run as one vmapped program.

    python -m experiments.reproduce --config zigzag_maze_cpu --methods mural vice sparse \
        --seeds 3 --out runs/zigzag_cpu

Writes OUT/METHOD/seedK/metrics.csv, OUT/METHOD/curves.npz, OUT/config.json, OUT/report.md,
OUT/success.png and, for the 2D mazes, OUT/reward_heatmap.png (MURAL vs VICE reward over the
maze at three points in training, first seed), and OUT/METHOD/checkpoints (the seeds' whole
state, latest only). A run cut off, or one to be continued to more steps, goes on with

    python -m experiments.reproduce --out runs/zigzag_cpu --resume [--steps 450000]

More seeds later: run again with `--first-seed 3`, then pool the runs into one report:

    python -m experiments.reproduce --merge runs/zigzag_cpu runs/zigzag_cpu_more --out runs/pooled
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time

import jax
import numpy as np

from mural_jax import config as config_lib
from mural_jax import logging as log_lib
from mural_jax.envs.point_maze import PointMaze
from mural_jax.train import make_train


def run_method(cfg, seeds: int, out: str, mesh=None, resume: bool = False):
    """Train `seeds` seeds of one config as a single vmapped program; returns metric curves.

    With a (`seed`, `data`) mesh the seeds are split over devices (see `Trainer.compiled_seeds`).
    The seeds' state is checkpointed every `cfg.checkpoint_every` env steps and at the end
    (OUT/checkpoints, the latest only); `resume` continues from there, so a reproduction cut
    off mid-run, or one given more steps, goes on exactly as an uninterrupted one would.
    """
    from mural_jax.checkpoint import Checkpointer

    trainer = make_train(cfg, mesh)
    keys = jax.vmap(jax.random.PRNGKey)(cfg.seed + np.arange(seeds))
    init, run_chunk = trainer.compiled_seeds(seeds)
    ckpt = Checkpointer(os.path.join(out, "checkpoints"), keep=1, save_replay=True)
    start = 0
    if resume and ckpt.latest_step() is not None:
        state = ckpt.restore(jax.eval_shape(init, keys), cfg)
        start = int(np.asarray(state.env_steps)[0]) // cfg.eval_every
    else:
        state = init(keys)
    paths = [os.path.join(out, f"seed{cfg.seed + k}", "metrics.csv") for k in range(seeds)]
    curves: dict[str, list] = {}
    if start:  # keep the rows up to the checkpoint (a cut run may have written more)
        kept = [read_rows(p, start * cfg.eval_every) for p in paths]
        if any(len(rows) != start for rows in kept):
            raise SystemExit(
                f"error: {out}: the seeds' metrics.csv files do not reach the checkpoint at env "
                f"step {start * cfg.eval_every}; allowed: resume a folder this tool wrote"
            )
        for row in zip(*kept, strict=True):
            for k in row[0]:
                curves.setdefault(k, []).append(np.array([r[k] for r in row]))
    writers = []
    for k, path in enumerate(paths):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if start:  # the kept rows replace the file whole: a kill here keeps the old one
            cols = list(kept[k][0])
            with open(path + ".tmp", "w", newline="") as f:
                f.write(",".join(cols) + "\n")
                for row in kept[k]:
                    f.write(",".join(f"{row[c]:.9g}" for c in cols) + "\n")
            os.replace(path + ".tmp", path)
        writers.append(open(path, "a" if start else "w", newline=""))
    # Reward maps are drawn over a 2D point maze's plane (the ant mazes have layouts too, but
    # their classifier sees the whole body).
    maze = isinstance(trainer.task, PointMaze) and trainer.method.learned
    n = trainer.num_chunks
    snap_at = {max(n // 3 - 1, 0), max(2 * n // 3 - 1, 0), n - 1}
    snap_dir = os.path.join(out, "snapshots")
    reward_fn = jax.jit(trainer.method.reward) if maze else None
    every = cfg.checkpoint_every
    t0 = last = time.time()
    for chunk in range(start, n):
        state, metrics = run_chunk(state)
        if maze and chunk in snap_at:
            seed0 = jax.tree.map(lambda x: x[0], state)
            _save_snapshot(snap_dir, *_snapshot(trainer, seed0, metrics, reward_fn))
        metrics = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
        now = time.time()
        metrics["train/steps_per_second"] = np.full(seeds, cfg.eval_every / (now - last))
        last = now
        for k, v in metrics.items():
            if not k.startswith("fault/"):
                curves.setdefault(k, []).append(v)
        for s, f in enumerate(writers):
            row = {k: float(v[s]) for k, v in metrics.items() if not k.startswith("fault/")}
            if chunk == 0:
                cols = ["env_steps"] + sorted(k for k in row if k != "env_steps")
                f.write(",".join(cols) + "\n")
            elif chunk == start:
                cols = list(kept[s][0])
            f.write(",".join(f"{row[c]:.9g}" for c in cols) + "\n")
            f.flush()
        bad = {
            k[6:]: [int(x) for x in v] for k, v in metrics.items() if k.startswith("fault/")
            if np.any(v >= 0)
        }  # fmt: skip
        if bad:  # NaN/inf inside the scan: stop, saying which quantity, seed and env step
            for f in writers:
                f.close()
            ckpt.wait()
            raise SystemExit(
                f"error: {cfg.method}: non-finite values (per seed, first env step, -1 = fine): "
                + "; ".join(f"{k} {v}" for k, v in bad.items())
                + f". Last good checkpoint: {ckpt.directory}"
            )
        steps = int(metrics["env_steps"][0])
        if chunk == n - 1 or (every and steps // every > (steps - cfg.eval_every) // every):
            ckpt.save(steps, state, cfg)
        sr = metrics["eval/success_rate"]
        print(
            f"  {cfg.method:>6} [{steps:>7d}/{cfg.steps}] "
            f"success {sr.mean():.2f} (per seed {np.round(sr, 2).tolist()}) "
            f"dist {metrics['eval/final_distance'].mean():.2f}  {now - t0:.0f}s",
            flush=True,
        )
    ckpt.wait()
    ckpt.close()
    for f in writers:
        f.close()
    curves = {k: np.stack(v, axis=0) for k, v in curves.items()}  # (chunks, seeds)
    if not maze:
        return curves, None
    examples = np.asarray(state.success_examples[0])
    shots = _load_snapshots(snap_dir, [(c + 1) * cfg.eval_every for c in sorted(snap_at)])
    return curves, (trainer.task.layout.walls, (trainer, examples, shots))


def load_latest(run: str, method: str = "mural"):
    """A reproduction's `method` at its latest checkpoint: (cfg, trainer, state, seeds).

    `state` holds every seed (leading axis); `cfg.seed` is the first seed's number.
    """
    from mural_jax.checkpoint import Checkpointer

    folder = os.path.join(run, method)
    if not os.path.isdir(os.path.join(folder, "checkpoints")):
        done = sorted(
            d for d in os.listdir(run) if os.path.isdir(os.path.join(run, d, "checkpoints"))
        )
        raise SystemExit(
            f"error: {run} has no {method}/checkpoints; allowed: a reproduction folder with one "
            f"of {done or 'no method checkpointed yet'}"
        )
    base = config_lib.load_experiment(os.path.join(run, "config.json"))
    cfg = config_lib.replace(base, {"method": method}).validate()
    seeds = len([d for d in os.listdir(folder) if d.startswith("seed")])
    trainer = make_train(cfg)
    init, _ = trainer.compiled_seeds(seeds)
    keys = jax.vmap(jax.random.PRNGKey)(cfg.seed + np.arange(seeds))
    ckpt = Checkpointer(os.path.join(folder, "checkpoints"), keep=1, use_async=False)
    state = ckpt.restore(jax.eval_shape(init, keys), cfg)
    return cfg, trainer, state, seeds


def read_rows(path: str, up_to: int) -> list[dict[str, float]]:
    """A seed's metrics.csv rows with env_steps <= `up_to`, as floats."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: float(v) for k, v in r.items()} for r in rows if float(r["env_steps"]) <= up_to]


def _savez(path: str, **arrays) -> None:
    """np.savez, atomically: a crash leaves the old file or the new one, never half."""
    tmp = path[: -len(".npz")] + ".tmp.npz"  # np.savez appends .npz to other names
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _write_text(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def _save_snapshot(folder: str, steps, grid, visited, sr) -> None:
    os.makedirs(folder, exist_ok=True)
    xs, ys, r = grid
    _savez(os.path.join(folder, f"{steps}.npz"), xs=xs, ys=ys, r=r, visited=visited, sr=sr)


def _load_snapshots(folder: str, at: list[int]) -> list:
    """For each env step in `at`, the saved reward map nearest to it (a resumed run's thirds
    fall between the first run's maps)."""
    saved = sorted(int(f[:-4]) for f in os.listdir(folder) if f[:-4].isdigit())
    shots = []
    for step in sorted({min(saved, key=lambda s, t=t: abs(s - t)) for t in at}):
        z = np.load(os.path.join(folder, f"{step}.npz"))
        shots.append((step, (z["xs"], z["ys"], z["r"]), z["visited"], float(z["sr"])))
    return shots


def _snapshot(trainer, state, metrics, reward_fn):
    """Seed 0's learned reward over the maze, a sample of visited states, eval success."""
    from experiments.heatmap import reward_grid, visited_sample

    visited = visited_sample(state)
    sr = float(np.asarray(metrics["eval/success_rate"])[0])
    return int(state.env_steps), reward_grid(trainer, state, reward_fn), visited, sr


def bootstrap_ci(x: np.ndarray, n: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap confidence interval of the mean over seeds."""
    rng = np.random.default_rng(seed)
    means = rng.choice(x, size=(n, len(x)), replace=True).mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def confidence_interval(x: np.ndarray) -> tuple[float, float, str]:
    """95% CI of the mean success over seeds, and its kind.

    When every seed's rate is 0 or 1 (a deterministic policy from a fixed start), the mean is
    a binomial proportion (solved seeds / seeds) and the exact Clopper-Pearson interval holds:
    a bootstrap of 3 solved seeds out of 3 would give the empty-width [1, 1]. Otherwise the
    percentile bootstrap.
    """
    x = np.asarray(x, float)
    if np.all((x == 0) | (x == 1)):
        from scipy.stats import binomtest

        ci = binomtest(int(x.sum()), len(x)).proportion_ci(0.95, method="exact")
        return float(ci.low), float(ci.high), "exact"
    return (*bootstrap_ci(x), "bootstrap")


def seed_numbers(run: str, method: str) -> list[int]:
    """The seed numbers of RUN/METHOD's curves: a pooled run lists them in seeds.json, a run of
    this tool has config.seed, config.seed + 1, ... (one per curves column)."""
    listed = os.path.join(run, method, "seeds.json")
    if os.path.exists(listed):
        with open(listed) as f:
            return [int(v) for v in json.load(f)]
    first = config_lib.load_experiment(os.path.join(run, "config.json")).seed
    columns = np.load(os.path.join(run, method, "curves.npz"))["env_steps"].shape[1]
    return list(range(first, first + columns))


def _span(seeds: list[int]) -> str:
    """Seed numbers as ranges: [0, 1, 2, 6, 7, 8] -> "0-2, 6-8"."""
    runs: list[list[int]] = []
    for s in sorted(seeds):
        if runs and s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def iqm(x: np.ndarray) -> float:
    """Interquartile mean over seeds (rliable's aggregate): mean of the middle 50%."""
    from scipy.stats import trim_mean

    return float(trim_mean(x, 0.25))


def _machine_key(m: dict) -> str:
    simd = m.get("simd") or []
    avx512 = "AVX-512" if any(f.startswith("avx512") for f in simd) else "no AVX-512"
    pkgs = m.get("packages") or {}
    return (
        f"{m.get('backend')} x{m.get('devices')} ({m.get('device_kind')}), {m.get('processor')}, "
        f"{avx512}, {len(simd)} SIMD flags, jax {pkgs.get('jax')}"
    )


def stability(sr: np.ndarray) -> dict[str, int | float]:
    """How well seeds keep what they solved, from eval success curves `sr` (chunks, seeds):
    seeds that ever succeeded, the mean success over the last tenth of the evaluations, and
    the evaluations from each seed's first success on that failed ("lapses"). The final
    evaluation alone counts a seed that solved the task all run and missed the last one as
    unsolved; these say how often that happens."""
    chunks, _ = sr.shape
    ever = (sr > 0).any(0)
    tail = sr[chunks - max(1, chunks // 10) :].mean()
    after = np.arange(chunks)[:, None] >= np.argmax(sr > 0, axis=0)[None, :]
    after &= ever[None, :]
    return {
        "ever_solved": int(ever.sum()),
        "seeds": int(sr.shape[1]),
        "last_tenth_mean": float(tail),
        "lapses": int((after & (sr == 0)).sum()),
        "evals_after_first_success": int(after.sum()),
    }


def machines_summary(out: str) -> list[str]:
    """Report lines on the machines in OUT/machines.jsonl: each distinct one and how many
    starts or resumes ran on it (a pooled run lists its sources'); none if there is no record."""
    path = os.path.join(out, "machines.jsonl")
    if not os.path.exists(path):
        return []
    counts: dict[tuple, list] = {}  # full identity (all SIMD flags) -> [description, count]
    for line in open(path):
        m = json.loads(line)
        identity = (_machine_key(m), tuple(m.get("simd") or []))
        counts.setdefault(identity, [_machine_key(m), 0])[1] += 1
    lines = ["", "Machines (starts and resumes, from machines.jsonl):", ""]
    lines += [f"- {text}: {n}" for text, n in counts.values()]
    if len(counts) > 1:
        lines += [
            "",
            "The seeds ran on more than one kind of machine: XLA compiles for the processor, so "
            "a seed's run here may differ at float level from the same seed run elsewhere.",
        ]
    return lines


def report(out: str, title: str, methods: list[str] | None = None) -> str:
    """OUT/report.md (final success per method: mean, 95% CI, IQM, per seed; `stability`) and
    OUT/success.png (eval success vs env steps, mean +- stderr), from OUT/METHOD/curves.npz."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = methods or sorted(
        m for m in os.listdir(out) if os.path.exists(os.path.join(out, m, "curves.npz"))
    )
    lines = [
        f"# {title}",
        "",
        "Final eval success rate (deterministic policy) across seeds: mean, 95% CI of the "
        "mean (exact: Clopper-Pearson on the solved seeds, when every seed's rate is 0 or 1; "
        "else percentile bootstrap), interquartile mean (IQM), and per seed; final distance "
        "to the goal.",
        "",
        "| method | seeds | mean | 95% CI | IQM | per seed | final distance |",
        "|---|---|---|---|---|---|---|",
    ]
    steadiness = [
        "",
        "Whether solved seeds stay solved: seeds that succeeded in any evaluation, the mean "
        "success over the last tenth of the evaluations, and the evaluations from a seed's "
        "first success on that failed (lapses).",
        "",
        "| method | ever solved | last-tenth mean | lapses after first success |",
        "|---|---|---|---|",
    ]
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in methods:
        curves = np.load(os.path.join(out, method, "curves.npz"))
        steps = curves["env_steps"][:, 0]
        sr = curves["eval.success_rate"]
        mean, se = sr.mean(1), sr.std(1) / np.sqrt(sr.shape[1])
        ax.plot(steps, mean, label=method)
        ax.fill_between(steps, mean - se, mean + se, alpha=0.2)
        final = sr[-1]
        lo, hi, kind = confidence_interval(final)
        dist = curves["eval.final_distance"][-1]
        lines.append(
            f"| {method} | {_span(seed_numbers(out, method))} | {final.mean():.2f} | "
            f"[{lo:.2f}, {hi:.2f}] {kind} | {iqm(final):.2f} | {np.round(final, 2).tolist()} "
            f"| {dist.mean():.2f} |"
        )
        st = stability(sr)
        steadiness.append(
            f"| {method} | {st['ever_solved']} of {st['seeds']} | {st['last_tenth_mean']:.2f} | "
            f"{st['lapses']} of {st['evals_after_first_success']} |"
        )
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval success rate")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "success.png"), dpi=100)
    plt.close(fig)
    lines += steadiness
    lines += ["", "![success rate](success.png)"]
    if os.path.exists(os.path.join(out, "reward_heatmap.png")):
        lines += ["", "Learned reward over the maze (seed 0):", "", "![reward](reward_heatmap.png)"]
    lines += machines_summary(out)
    text = "\n".join(lines) + "\n"
    _write_text(os.path.join(out, "report.md"), text)
    return text


def merge(runs: list[str], out: str) -> str:
    """Pool several reproductions of one config (e.g. seeds 0-2 and 3-5, or the methods run
    as separate jobs) into OUT/METHOD/curves.npz and OUT's report. Each method's seeds are the
    columns of every run that has it, in the order given."""

    def has(run, method):
        return os.path.exists(os.path.join(run, method, "curves.npz"))

    methods = sorted({m for r in runs for m in os.listdir(r) if has(r, m)})
    if not methods:
        raise SystemExit(f"error: none of {runs} holds a METHOD/curves.npz")
    configs = [config_lib.load_experiment(os.path.join(r, "config.json")) for r in runs]
    for r, c in zip(runs[1:], configs[1:], strict=True):
        diff = {
            k: (v, getattr(c, k))
            for k, v in vars(configs[0]).items()
            if k not in ("seed", "method") and getattr(c, k) != v
        }
        if diff:
            raise SystemExit(f"error: {r} was run with other settings than {runs[0]}: {diff}")
    pooled, seeds = {}, {}
    for method in methods:
        with_method = [r for r in runs if has(r, method)]
        # The same seed twice (a forgotten --first-seed) would count one run as two.
        seeds[method] = [s for r in with_method for s in seed_numbers(r, method)]
        repeated = sorted({s for s in seeds[method] if seeds[method].count(s) > 1})
        if repeated:
            raise SystemExit(
                f"error: {method}: seed(s) {repeated} appear in more than one of {with_method}; "
                "allowed: runs of distinct seeds (reproduce --first-seed N)"
            )
        parts = [np.load(os.path.join(r, method, "curves.npz")) for r in with_method]
        steps = [p["env_steps"][:, 0] for p in parts]
        for r, s in zip(with_method[1:], steps[1:], strict=True):
            if s.shape != steps[0].shape or np.any(s != steps[0]):
                raise SystemExit(
                    f"error: {method}: {r} evaluates at other env steps than {with_method[0]} "
                    f"({len(s)} evals to {s[-1]} vs {len(steps[0])} to {steps[0][-1]}); "
                    "allowed: runs of equal length and eval_every"
                )
        keys = sorted(set.intersection(*(set(p.files) for p in parts)))
        pooled[method] = {k: np.concatenate([p[k] for p in parts], axis=1) for k in keys}
    for method, curves in pooled.items():  # everything checked: now write
        os.makedirs(os.path.join(out, method), exist_ok=True)
        _savez(os.path.join(out, method, "curves.npz"), **curves)
        with open(os.path.join(out, method, "seeds.json"), "w") as f:
            json.dump(seeds[method], f)
    config_lib.save_json(configs[0], os.path.join(out, "config.json"))
    with open(os.path.join(out, "machines.jsonl"), "w") as f:  # the sources' records, tagged
        for r in runs:
            if os.path.exists(os.path.join(r, "machines.jsonl")):
                for line in open(os.path.join(r, "machines.jsonl")):
                    f.write(json.dumps({"run": r, **json.loads(line)}) + "\n")
    c = configs[0]
    title = f"{c.env}: seeds pooled from {len(runs)} runs, {c.steps} env steps"
    return report(out, title, methods)


def main(argv=None) -> None:
    try:
        _main(argv)
    except config_lib.ConfigError as e:  # a bad config name, value or --steps: no traceback
        raise SystemExit(f"error: {e}") from None


def _main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", help="experiment name or JSON path (required unless --merge)")
    p.add_argument("--methods", nargs="+", default=["mural", "vice", "sparse", "dense"])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--first-seed", type=int, default=0, help="seeds run are N, N+1, ...")
    p.add_argument(
        "--resume", action="store_true",
        help="continue the reproduction in --out from its checkpoints (after a cut, or with "
        "more --steps); methods, seeds and config come from --out",
    )  # fmt: skip
    p.add_argument(
        "--merge", nargs="+", metavar="RUN",
        help="pool the seeds of these finished reproductions into --out (no training)",
    )  # fmt: skip
    p.add_argument(
        "--seed-devices", type=int, default=0,
        help="split seeds over this many device groups, each seed's envs/replay/batches over the "
        "rest of --devices (0: no mesh, all seeds on the default device)",
    )  # fmt: skip
    p.add_argument("--devices", type=int, default=0, help="devices to use (0: all)")
    args = p.parse_args(argv)
    if args.merge:
        if os.path.exists(os.path.join(args.out, "config.json")):
            raise SystemExit(f"error: {args.out} already holds a reproduction; choose a new --out")
        print(merge(args.merge, args.out))
        return
    run_file = os.path.join(args.out, "run.json")
    if args.resume:
        if not os.path.exists(run_file):
            raise SystemExit(
                f"error: --resume: {args.out} holds no resumable reproduction (no run.json); "
                "allowed: a folder written by this tool with checkpoints (since session 5)"
            )
        with open(run_file) as f:
            run = json.load(f)
        base = config_lib.load_experiment(os.path.join(args.out, "config.json"))
        if args.steps:
            if args.steps < base.steps:
                raise SystemExit(
                    f"error: --steps={args.steps} is invalid for resuming {args.out}, a run of "
                    f"{base.steps} steps; allowed: >= {base.steps}"
                )
            base = config_lib.replace(base, {"steps": args.steps})
    else:
        if not args.config:
            raise SystemExit("error: --config is required (or --merge RUN ..., or --resume)")
        if args.first_seed < 0:
            raise SystemExit(f"error: --first-seed={args.first_seed} is invalid; allowed: >= 0")
        run = {
            "methods": list(args.methods), "seeds": args.seeds,
            "seed_devices": args.seed_devices, "devices": args.devices,
            "argv": argv if argv is not None else sys.argv[1:], "resumed": [],
        }  # fmt: skip
        base = config_lib.load_experiment(args.config)
        if args.steps:
            base = config_lib.replace(base, {"steps": args.steps})
        if args.first_seed:
            base = config_lib.replace(base, {"seed": args.first_seed})
        if os.path.exists(os.path.join(args.out, "config.json")):
            raise SystemExit(f"error: {args.out} already holds a reproduction; choose a new --out")
    for method in run["methods"]:  # every method's config, checked before anything is written
        config_lib.replace(base, {"method": method}).validate()
    mesh = None
    if run["seed_devices"]:
        from mural_jax import sharding as sharding_lib

        try:
            mesh = sharding_lib.make_seed_mesh(run["devices"], run["seed_devices"])
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
        if run["seeds"] % run["seed_devices"]:
            raise SystemExit(
                f"error: seeds={run['seeds']} is invalid with seed_devices={run['seed_devices']}; "
                f"allowed: a multiple of {run['seed_devices']}"
            )
    os.makedirs(args.out, exist_ok=True)
    config_lib.save_json(base, os.path.join(args.out, "config.json"))
    if args.resume:
        run["resumed"].append(argv if argv is not None else sys.argv[1:])
    with open(run_file + ".tmp", "w") as f:
        json.dump(run, f)
    os.replace(run_file + ".tmp", run_file)
    log_lib.record_machine(args.out)
    seeds = run["seeds"]
    results, snapshots, walls, methods = {}, {}, None, run["methods"]
    for method in methods:
        cfg = config_lib.replace(base, {"method": method}).validate()
        print(f"{method}: {seeds} seeds vmapped, {cfg.steps} env steps each", flush=True)
        out = os.path.join(args.out, method)
        results[method], shots = run_method(cfg, seeds, out, mesh, resume=args.resume)
        if shots:
            walls, snapshots[method] = shots
        _savez(
            os.path.join(args.out, method, "curves.npz"),
            **{k.replace("/", "."): v for k, v in results[method].items()},
        )
    if snapshots:
        from experiments.heatmap import plot

        plot(snapshots, walls, os.path.join(args.out, "reward_heatmap.png"), f"{base.env}")
    print(report(args.out, f"{base.env}: {seeds} seeds, {base.steps} env steps", methods))


if __name__ == "__main__":
    main()
