"""`make bench`: speed figures, each against a reference measured in the same run.

    python -m benchmarks.run [--only meta_nml,overhead,sac] [--widths 256,2048]

- meta_nml: both-label CNML queries/s for (a) the vmapped closed-form meta-NML, (b) naive
  per-query vmap(grad) on materialised weight copies, (c) one query at a time as the original
  does; ratios a/b and a/c, and the max |a - b| of the likelihoods.
- overhead: env steps/s of MURAL vs sparse on the same task and config (and with rewards stored
  at collection, and stored then relabelled after each retraining); ratio = sparse / mural wall
  clock.
- envs: env steps/s of each task's batched, jitted step (random actions, a scan of steps), and
  for the ant every Brax backend with a check that its wall stops a launched ant; ratios
  against the default backend (mjx) in the same run.
- sac: our SAC env steps/s on zigzag_maze vs Brax's own SAC trainer on the same task and config
  (run in .venv-brax with a JAX it supports, see benchmarks/setup_brax_venv.sh).

Updates benchmarks/latest.json (the newest result of each section, with the run that measured
it: date, device, command) and appends a section to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp

from mural_jax import config as config_lib
from mural_jax import logging as log_lib
from mural_jax.rewards import classifier, cnml, meta_nml
from mural_jax.train import make_train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KW = dict(lr=0.01, thresh=0.5, q_weight=1 / 32)


def _time(fn, *args, repeats=3):
    """Best wall time of `repeats` calls after one warm-up (compile) call."""
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return best


def bench_meta_nml(width: int, n_fast: int, n_naive: int, n_serial: int) -> dict:
    d, m = 2, 63
    ks = jax.random.split(jax.random.PRNGKey(0), 4)
    params = classifier.init(ks[0], d, (width, width))
    queries = 3.0 * jax.random.uniform(ks[1], (max(n_fast, n_naive), d), minval=-1, maxval=1)
    ref_x = 3.0 * jax.random.uniform(ks[2], (m, d), minval=-1, maxval=1)
    ref_y = jax.random.bernoulli(ks[3], 0.5, (m,)).astype(jnp.int32)

    # (a) closed form, vmapped over queries and labels; one support for the batch (its
    # factors computed once), queries in memory chunks of up to 4096.
    @jax.jit
    def fast(qs):
        chunks = qs.reshape(-1, min(4096, qs.shape[0]), d)
        ref_f = meta_nml.support_factors(params, ref_x, ref_y)
        f = lambda c: meta_nml.cnml_log_likelihoods(
            params, c, ref_x, ref_y, ref_factors=ref_f, **KW
        )
        lp1, lp0 = jax.lax.map(f, chunks)
        return jnp.exp(lp1.reshape(-1)), jnp.exp(lp0.reshape(-1))

    # (b) naive: per-query vmap(grad) with a materialised weight copy per query and label.
    def naive_one(q):
        w = meta_nml.support_weights(q, ref_x, KW["thresh"])
        return jnp.stack(
            [
                cnml.query_likelihood(params, q, y, ref_x, ref_y, w, KW["q_weight"], KW["lr"], 1)
                for y in (1, 0)
            ]
        )

    naive_chunk = 8 if width >= 1024 else 64

    @jax.jit
    def naive(qs):
        p = jax.lax.map(jax.vmap(naive_one), qs.reshape(-1, naive_chunk, d))
        return p[..., 0].reshape(-1), p[..., 1].reshape(-1)

    # (c) the original's way: one query at a time from the host.
    serial_one = jax.jit(naive_one)

    def serial(qs):
        return [serial_one(q) for q in qs]

    qa, qb, qc = queries[:n_fast], queries[:n_naive], queries[:n_serial]
    ta = _time(fast, qa)
    tb = _time(naive, qb)
    tc = _time(serial, qc, repeats=1)
    pa, pb = fast(qb[: (n_naive // 256) * 256 or n_naive]), naive(qb)
    n_cmp = pa[0].shape[0]
    err = max(
        float(jnp.max(jnp.abs(pa[0] - pb[0][:n_cmp]))),
        float(jnp.max(jnp.abs(pa[1] - pb[1][:n_cmp]))),
    )
    qps = {"a_vmapped": n_fast / ta, "b_naive_vmap_grad": n_naive / tb, "c_serial": n_serial / tc}
    return {
        "width": width,
        "queries_per_s": qps,
        "ratio_a_over_b": qps["a_vmapped"] / qps["b_naive_vmap_grad"],
        "ratio_a_over_c": qps["a_vmapped"] / qps["c_serial"],
        "max_abs_error_a_vs_b": err,
        "batch": {"a": n_fast, "b": n_naive, "c": n_serial},
    }


def _steps_per_s(cfg, chunks: int) -> float:
    trainer = make_train(cfg)
    run = jax.jit(trainer.run_chunk)
    state = trainer.init(jax.random.PRNGKey(0))
    state, _ = run(state)  # compile + random-action phase
    jax.block_until_ready(state)
    t = time.perf_counter()
    for _ in range(chunks):
        state, m = run(state)
    jax.block_until_ready(m)
    return chunks * cfg.eval_every / (time.perf_counter() - t)


def bench_overhead(config: str, chunks: int) -> dict:
    base = config_lib.load_experiment(config)
    out = {"config": config}
    for name, over in [
        ("sparse", {"method": "sparse"}),
        ("mural", {"method": "mural"}),
        ("mural_reward_at_collection", {"method": "mural", "reward_at_collection": True}),
        (
            "mural_relabel",
            {"method": "mural", "reward_at_collection": True, "relabel_rewards": True},
        ),
    ]:
        cfg = config_lib.replace(base, {**over, "steps": base.eval_every * (chunks + 1)})
        out[name + "_steps_per_s"] = _steps_per_s(cfg, chunks)
    out["overhead_mural_vs_sparse"] = out["sparse_steps_per_s"] / out["mural_steps_per_s"]
    out["overhead_collection_vs_sparse"] = (
        out["sparse_steps_per_s"] / out["mural_reward_at_collection_steps_per_s"]
    )
    out["overhead_relabel_vs_sparse"] = out["sparse_steps_per_s"] / out["mural_relabel_steps_per_s"]
    # What relabelling costs depends on the replay's fill: one query per stored row per
    # retraining, against fresh rewards' one per sampled transition and step.
    out["relabel_replay_rows_at_end"] = min(base.eval_every * (chunks + 1), base.replay_capacity)
    out["fresh_queries_per_retraining"] = int(
        base.classifier.update_every * base.updates_per_step * base.sac.batch_size * base.sac.n_step
    )
    return out


# Same task and config for both trainers (matches tests/test_train.py's SAC test).
SAC_BENCH = {
    "env": "zigzag_maze",
    "method": "dense",
    "num_envs": 8,
    "updates_per_step": 0.5,
    "eval_every": 4000,
    "random_steps": 1000,
    "replay_capacity": 100000,
    "eval_episodes": 8,
    "sac": {
        "hidden": [128, 128],
        "learning_rate": 1e-3,
        "gamma": 0.95,
        "batch_size": 128,
        "init_alpha": 0.1,
    },
}


def bench_sac(steps: int) -> dict:
    cfg = config_lib.from_dict(config_lib.TrainConfig, {**SAC_BENCH, "steps": steps})
    ours = _steps_per_s(cfg, steps // cfg.eval_every - 1)
    ours_device = jax.devices()[0].platform
    out = {"ours_env_steps_per_s": ours, "ours_device": ours_device, "config": SAC_BENCH}
    brax_py = os.path.join(ROOT, ".venv-brax", "bin", "python")
    if not os.path.exists(brax_py):
        setup = os.path.join(ROOT, "benchmarks", "setup_brax_venv.sh")
        if os.path.exists(setup):
            subprocess.run(["bash", setup], cwd=ROOT, check=False)
    if os.path.exists(brax_py):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "brax.json")
            env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
            cmd = [brax_py, "benchmarks/brax_sac.py", "--steps", str(steps), "--json", path]
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
            if proc.returncode == 0 and os.path.exists(path):
                brax = json.load(open(path))
                out["brax"] = brax
                if ours_device == "cpu":  # Brax's trainer runs on the CPU (its own venv)
                    out["ratio_ours_over_brax"] = ours / brax["env_steps_per_s"]
                else:  # no like-for-like ratio: an accelerator against a CPU
                    out["ratio_note"] = f"ours on {ours_device}, Brax on cpu: no ratio"
            else:
                out["brax_error"] = proc.stderr[-2000:]
    else:
        out["brax_error"] = "no .venv-brax (benchmarks/setup_brax_venv.sh failed)"
    return out


SCALING_WORKER = """
import json, sys, time, jax
from mural_jax import config as C, sharding as S
from mural_jax.train import make_train
base = C.load_experiment("quickstart")
res = {}
for n in [1] + [int(a) for a in sys.argv[1:]]:
    cfg = C.replace(base, {"method": "sparse", "num_envs": 8 * n, "eval_every": 960 * n,
                           "steps": 960 * n * 4, "sac.batch_size": 128 * n, "devices": n,
                           "checkpoint_every": 0})
    tr = make_train(cfg, S.make_mesh(n))
    init, run, _ = tr.compiled()
    st = init(jax.random.PRNGKey(0))
    st, m = run(st); jax.block_until_ready(m)
    t = time.perf_counter()
    for _ in range(3):
        st, m = run(st)
    jax.block_until_ready(m)
    res[n] = 3 * cfg.eval_every / (time.perf_counter() - t)
print(json.dumps(res))
"""


def bench_scaling(devices: list[int]) -> dict:
    """Weak scaling (8 envs and batch 128 per device): efficiency = sps_N / (N * sps_1).

    On a CPU the devices are simulated (XLA_FLAGS) and share the same cores, so this checks the
    plumbing, not the hardware; on a multi-GPU/TPU host it measures real scaling.
    """
    n_max = max(devices)
    env = dict(os.environ)
    if jax.devices()[0].platform == "cpu":
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n_max}"
    env["PYTHONPATH"] = ROOT
    proc = subprocess.run(
        [sys.executable, "-c", SCALING_WORKER, *map(str, devices)],
        env=env, cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    sps = {int(k): v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}
    return {
        "env_steps_per_s": sps,
        "efficiency": {n: sps[n] / (n * sps[1]) for n in sps},
        "simulated_cpu_devices": jax.devices()[0].platform == "cpu",
    }


def _env_rate(env, n_envs: int, n_steps: int) -> tuple[float, float]:
    """(compile seconds, env steps/s) of `n_steps` random-action steps of `n_envs` envs."""

    @jax.jit
    def run(rng):
        k_reset, k_act = jax.random.split(rng)
        state = jax.vmap(env.reset)(jax.random.split(k_reset, n_envs))
        keys = jax.random.split(k_act, n_steps)

        def step(s, k):
            a = jax.random.uniform(k, (n_envs, env.action_size), minval=-1.0, maxval=1.0)
            return jax.vmap(env.step)(s, a), None

        return jax.lax.scan(step, state, keys)[0].obs

    t = time.perf_counter()
    jax.block_until_ready(run(jax.random.PRNGKey(0)))
    compile_s = time.perf_counter() - t
    best = _time(run, jax.random.PRNGKey(1), repeats=2)
    return compile_s, n_envs * n_steps / best


def _ant_wall_holds(env, n: int = 8) -> bool:
    """Launch ants at 6 m/s into the one-wall maze's wall (face at x = -1.25); True if no
    torso (a sphere of radius 0.25) sinks more than 0.1 into it: torso x < -1.4. Measured on
    CPU: a torso resting on the face stops at x = -1.49 to -1.50; one through the wall
    reaches x > -0.3."""

    def launch(rng):
        ps = env._init_state(rng, jnp.array([-2.3, 1.5]))
        ps = env.pipeline_init(ps.q, ps.qd.at[0].set(6.0))
        state = env.reset(rng).replace(pipeline_state=ps, obs=env._obs(ps))

        def step(s, _):
            s = env.step(s, jnp.zeros(env.action_size))
            return s, s.obs[0]

        return jax.lax.scan(step, state, None, length=40)[1].max()

    x = jax.jit(jax.vmap(launch))(jax.random.split(jax.random.PRNGKey(0), n))
    return bool(x.max() < -1.4)


def bench_envs(names: list[str], n_envs: int, n_steps: int) -> dict:
    """Batched env throughput per task; `ant_maze` is measured on every Brax backend."""
    from mural_jax.envs import make_env
    from mural_jax.envs.ant_maze import BACKENDS

    out = {"num_envs": n_envs, "steps_per_call": n_steps, "tasks": {}}
    for name in names:
        variants = [(b, {"backend": b}) for b in BACKENDS] if name == "ant_maze" else [("", {})]
        for label, kw in variants:
            key = f"{name}[{label}]" if label else name
            try:
                env = make_env(name, **kw)
                compile_s, sps = _env_rate(env, n_envs, n_steps)
                row = {"compile_s": compile_s, "env_steps_per_s": sps}
                if name == "ant_maze":
                    row["wall_holds"] = _ant_wall_holds(env)
            except Exception as e:  # a backend that fails is a result, not a crash
                row = {"error": f"{type(e).__name__}: {e}"[:300]}
            out["tasks"][key] = row
            print(f"  {key}: {row}", flush=True)
    ref = out["tasks"].get("ant_maze[mjx]", {}).get("env_steps_per_s")
    if ref:
        for key, row in out["tasks"].items():
            if key.startswith("ant_maze[") and "env_steps_per_s" in row:
                row["ratio_vs_mjx"] = row["env_steps_per_s"] / ref
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description="mural_jax benchmarks")
    p.add_argument("--only", default="meta_nml,overhead,envs,sac,scaling")
    p.add_argument("--envs", default="ant_maze,ant_u_maze,sawyer_push,sawyer_door,sawyer_pick,"
                   "dexterous_hand")  # fmt: skip
    p.add_argument("--env-batch", type=int, default=0, help="envs per task (0: 64 CPU, 4096 GPU)")
    p.add_argument("--scaling-devices", default="2,4")
    p.add_argument("--widths", default="256,2048")
    p.add_argument("--overhead-config", default="quickstart")
    p.add_argument("--sac-steps", type=int, default=20000)
    args = p.parse_args(argv)
    only = set(args.only.split(","))
    dev = jax.devices()[0]
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "device": f"{dev.platform}: {dev.device_kind}",
        "cpu_count": os.cpu_count(),
        "machine": log_lib.processor(),
        "simd": " ".join(log_lib.simd_features()),
        "jax": jax.__version__,
        "command": "python -m benchmarks.run " + " ".join(argv or sys.argv[1:]),
    }
    on_gpu = dev.platform != "cpu"
    if "meta_nml" in only:
        results["meta_nml"] = []
        for w in map(int, args.widths.split(",")):
            if on_gpu:
                # (b) holds a weight copy per query (2048^2 floats each), so its batch stays
                # small: on a GPU the (a)/(b) ratio then also counts (a)'s larger batch. The
                # batches are recorded with each result ("batch").
                sizes = (65536, 256, 32)
            else:
                sizes = (4096, 512, 32) if w <= 512 else (512, 32, 8)
            r = bench_meta_nml(w, *sizes)
            results["meta_nml"].append(r)
            q = r["queries_per_s"]
            print(
                f"meta-NML width {w}: (a) {q['a_vmapped']:.0f} q/s  (b) "
                f"{q['b_naive_vmap_grad']:.1f} q/s  (c) {q['c_serial']:.1f} q/s  "
                f"a/b {r['ratio_a_over_b']:.0f}x  a/c {r['ratio_a_over_c']:.0f}x  "
                f"max|a-b| {r['max_abs_error_a_vs_b']:.1e}",
                flush=True,
            )
    if "overhead" in only:
        r = bench_overhead(args.overhead_config, chunks=4)
        results["overhead"] = r
        print(
            f"MURAL vs sparse ({args.overhead_config}): sparse {r['sparse_steps_per_s']:.0f} "
            f"steps/s, mural {r['mural_steps_per_s']:.0f}, overhead "
            f"{r['overhead_mural_vs_sparse']:.2f}x (stored-once rewards: "
            f"{r['overhead_collection_vs_sparse']:.2f}x; relabelled after each retraining: "
            f"{r['overhead_relabel_vs_sparse']:.2f}x)",
            flush=True,
        )
    if "envs" in only:
        n_envs = args.env_batch or (4096 if on_gpu else 64)
        print(f"env throughput, {n_envs} envs:", flush=True)
        results["envs"] = bench_envs(args.envs.split(","), n_envs, n_steps=20)
    if "sac" in only:
        r = bench_sac(args.sac_steps)
        results["sac"] = r
        line = f"SAC zigzag_maze: ours {r['ours_env_steps_per_s']:.0f} env steps/s"
        if "brax" in r:
            line += (
                f", Brax SAC {r['brax']['env_steps_per_s']:.0f} "
                f"(jax {r['brax'].get('jax_version')}), " + _sac_ratio(r)
            )
        else:
            line += f" (Brax SAC not measured: {r['brax_error'][-200:]})"
        print(line, flush=True)
    if "scaling" in only:
        r = bench_scaling([int(n) for n in args.scaling_devices.split(",")])
        results["scaling"] = r
        if "error" in r:
            print(f"scaling: failed: {r['error'][-300:]}")
        else:
            print(
                "scaling (weak, "
                + ("simulated CPU devices" if r["simulated_cpu_devices"] else "real devices")
                + "): "
                + ", ".join(
                    f"{n} dev {r['env_steps_per_s'][n]:.0f} steps/s (eff {r['efficiency'][n]:.2f})"
                    for n in sorted(r["env_steps_per_s"])
                ),
                flush=True,
            )
    os.makedirs(os.path.join(ROOT, "benchmarks"), exist_ok=True)
    # latest.json keeps the newest result of every section: a partial run (--only) replaces
    # only its sections, each stamped with the run that measured it.
    path = os.path.join(ROOT, "benchmarks", "latest.json")
    merged = {}
    if os.path.exists(path):
        with open(path) as f:
            merged = json.load(f)
        if "runs" not in merged:  # older single-run layout: keep it as one run
            old = merged
            meta = {k: old.pop(k) for k in list(old) if not isinstance(old[k], dict | list)}
            merged = {"runs": {"0": meta}, "sections": {k: {"run": "0", "result": v}
                                                       for k, v in old.items()}}  # fmt: skip
    merged.setdefault("runs", {})
    merged.setdefault("sections", {})
    run_id = str(len(merged["runs"]))
    merged["runs"][run_id] = {k: v for k, v in results.items() if not isinstance(v, dict | list)}
    for k, v in results.items():
        if isinstance(v, dict | list):
            merged["sections"][k] = {"run": run_id, "result": v}
    with open(path + ".tmp", "w") as f:  # every run's history: replaced whole, never half
        json.dump(merged, f, indent=2)
    os.replace(path + ".tmp", path)
    _append_markdown(results)
    print("wrote benchmarks/latest.json and docs/benchmarks.md")


def _sac_ratio(r: dict) -> str:
    if "ratio_ours_over_brax" in r:
        return f"ratio {r['ratio_ours_over_brax']:.2f}x"
    return r.get("ratio_note", "no ratio")


def _cpu_note(r: dict) -> str:
    """'; <model>, <widest vector ISA>' for CPU runs: ratios differ between CPU generations."""
    if not r.get("device", "").startswith("cpu"):
        return ""
    flags = r.get("simd", "").split()
    isa = next(
        (f for f in ("amx", "avx512", "avx2", "avx") if any(x.startswith(f) for x in flags)), ""
    )
    isa = {"amx": "AVX-512 + AMX", "avx512": "AVX-512", "avx2": "AVX2", "avx": "AVX"}.get(isa, "")
    return "; " + ", ".join(x for x in (r.get("machine", ""), isa) if x)


def _append_markdown(r: dict) -> None:
    lines = [
        "",
        f"## {r['date']} — {r['device']}, {r['cpu_count']} CPUs, jax {r['jax']}{_cpu_note(r)}",
        "",
        f"Command: `{r['command']}`",
        "",
    ]
    if "meta_nml" in r:
        lines += [
            "| width | (a) vmapped meta-NML q/s | (b) naive vmap(grad) q/s | (c) serial q/s "
            "| a/b | a/c | max abs err a-b |",
            "|---|---|---|---|---|---|---|",
        ]
        for m in r["meta_nml"]:
            q = m["queries_per_s"]
            lines.append(
                f"| {m['width']} | {q['a_vmapped']:.0f} | {q['b_naive_vmap_grad']:.1f} | "
                f"{q['c_serial']:.1f} | {m['ratio_a_over_b']:.0f}x | {m['ratio_a_over_c']:.0f}x "
                f"| {m['max_abs_error_a_vs_b']:.1e} |"
            )
        lines.append("")
    if "overhead" in r:
        o = r["overhead"]
        lines.append(
            f"MURAL vs sparse ({o['config']}): sparse {o['sparse_steps_per_s']:.0f} steps/s, "
            f"MURAL {o['mural_steps_per_s']:.0f} ({o['overhead_mural_vs_sparse']:.2f}x wall "
            f"clock), MURAL with stored-once rewards "
            f"{o['mural_reward_at_collection_steps_per_s']:.0f} "
            f"({o['overhead_collection_vs_sparse']:.2f}x), MURAL with stored rewards relabelled "
            f"after each retraining {o['mural_relabel_steps_per_s']:.0f} "
            f"({o['overhead_relabel_vs_sparse']:.2f}x; replay <= "
            f"{o['relabel_replay_rows_at_end']} rows, so <= that many queries per retraining, "
            f"against {o['fresh_queries_per_retraining']} for fresh rewards)."
        )
        lines.append("")
    if "envs" in r:
        e = r["envs"]
        lines += [
            f"Batched env throughput ({e['num_envs']} envs, random actions, scan of "
            f"{e['steps_per_call']} steps):",
            "",
            "| task[backend] | compile s | env steps/s | vs ant mjx | wall holds |",
            "|---|---|---|---|---|",
        ]
        for key, row in e["tasks"].items():
            if "error" in row:
                lines.append(f"| {key} | failed: {row['error'][:80]} | | | |")
                continue
            ratio = f"{row['ratio_vs_mjx']:.2f}x" if "ratio_vs_mjx" in row else ""
            wall = {True: "yes", False: "**no**"}.get(row.get("wall_holds"), "")
            lines.append(
                f"| {key} | {row['compile_s']:.0f} | {row['env_steps_per_s']:.0f} | {ratio} "
                f"| {wall} |"
            )
        lines.append("")
    if "sac" in r:
        s = r["sac"]
        line = "SAC on zigzag_maze (8 envs, 0.5 updates/step, 128x128, batch 128): ours "
        line += f"{s['ours_env_steps_per_s']:.0f} env steps/s"
        if "brax" in s:
            line += (
                f"; Brax's SAC trainer (jax {s['brax'].get('jax_version')}, separate venv) "
                f"{s['brax']['env_steps_per_s']:.0f}; " + _sac_ratio(s) + "."
            )
        else:
            line += "; Brax's SAC trainer not measured (see latest.json)."
        lines.append(line)
        lines.append("")
    if "scaling" in r and "error" not in r["scaling"]:
        sc = r["scaling"]
        kind = "simulated CPU devices (plumbing only)" if sc["simulated_cpu_devices"] else "devices"
        lines.append(
            f"Weak scaling on {kind}, sparse SAC quickstart, 8 envs and batch 128 per device: "
            + ", ".join(
                f"{n} device(s) {sc['env_steps_per_s'][n]:.0f} env steps/s "
                f"(efficiency {sc['efficiency'][n]:.2f})"
                for n in sorted(sc["env_steps_per_s"])
            )
            + "."
        )
        lines.append("")
    path = os.path.join(ROOT, "docs", "benchmarks.md")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write("# Benchmarks\n\nEach section is one `make bench` run (newest last).\n")
    with open(path, "a") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
