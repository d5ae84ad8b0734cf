"""Reproduction runner: seeds vmapped, per-seed metrics, report with CIs, figures."""

import csv
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.reproduce import (
    bootstrap_ci,
    confidence_interval,
    iqm,
    load_latest,
    main,
    stability,
)
from mural_jax import config as config_lib
from tests.test_train import tiny


def test_bootstrap_ci_and_iqm():
    x = np.array([0.0, 0.0, 1.0, 1.0])
    lo, hi = bootstrap_ci(x)
    assert 0.0 <= lo < 0.5 < hi <= 1.0
    assert bootstrap_ci(np.full(5, 0.7)) == (0.7, 0.7)
    assert iqm(np.array([0.0, 0.5, 0.5, 1.0, 100.0, -100.0, 0.5, 0.5])) == 0.5


def test_solved_or_not_seeds_get_the_exact_binomial_interval():
    """3 solved seeds of 3 is not certainty: Clopper-Pearson gives [0.29, 1], where a
    bootstrap of identical values has zero width."""
    lo, hi, kind = confidence_interval(np.ones(3))
    assert kind == "exact" and abs(lo - 0.2924) < 1e-4 and hi == 1.0
    lo, hi, kind = confidence_interval(np.array([1.0] * 11 + [0.0]))
    assert kind == "exact" and abs(lo - 0.6152) < 1e-4 and abs(hi - 0.9979) < 1e-4
    lo, hi, kind = confidence_interval(np.array([0.0, 0.0, 0.0]))
    assert kind == "exact" and lo == 0.0 and abs(hi - 0.7076) < 1e-4
    assert confidence_interval(np.array([0.5, 1.0, 1.0]))[2] == "bootstrap"


def test_stability_counts_lapses_after_first_success():
    # 10 evaluations of 3 seeds: seed 0 solves at eval 2 and lapses at evals 5 and 9 (the
    # final one); seed 1 never solves; seed 2 solves from eval 8 on.
    sr = np.zeros((10, 3))
    sr[2:, 0] = 1.0
    sr[[5, 9], 0] = 0.0
    sr[8:, 2] = 1.0
    st = stability(sr)
    assert st["ever_solved"] == 2 and st["seeds"] == 3
    assert st["evals_after_first_success"] == 8 + 2
    assert st["lapses"] == 2
    assert st["last_tenth_mean"] == pytest.approx(1 / 3)  # the last eval: 0, 0, 1


def test_reproduce_runs_seeds_vmapped_and_writes_report(tmp_path):
    cfg_path = tmp_path / "tiny.json"
    with open(cfg_path, "w") as f:
        json.dump(config_lib.to_dict(tiny(steps=400)), f)
    out = str(tmp_path / "repro")
    main(["--config", str(cfg_path), "--methods", "mural", "sparse", "--seeds", "2",
          "--out", out])  # fmt: skip
    for method in ("mural", "sparse"):
        for seed in (0, 1):
            rows = open(os.path.join(out, method, f"seed{seed}", "metrics.csv")).read().split()
            assert len(rows) == 3  # header + 2 chunks
    curves = np.load(os.path.join(out, "mural", "curves.npz"))
    assert curves["eval.success_rate"].shape == (2, 2)  # (chunks, seeds)
    text = open(os.path.join(out, "report.md")).read()
    assert "| mural |" in text and "| sparse |" in text and "95% CI" in text and "IQM" in text
    assert "lapses after first success" in text
    for fig in ("success.png", "reward_heatmap.png"):
        assert os.path.getsize(os.path.join(out, fig)) > 1000

    # More seeds later (--first-seed), pooled with the first run (--merge): sparse gets seeds
    # 0, 1 from the first run and seed 2 from the second; mural keeps its 2.
    more = str(tmp_path / "more")
    main(["--config", str(cfg_path), "--methods", "sparse", "--seeds", "1", "--first-seed", "2",
          "--out", more])  # fmt: skip
    assert "seed2" in os.listdir(os.path.join(more, "sparse"))
    # Its one seed is seed 2's run: its success examples (drawn from the seed's key, never
    # trained) are those of seed 2, not of seed 0.
    _, trainer, state, n_seeds = load_latest(more, "sparse")
    drawn = lambda seed: trainer.init(jax.random.PRNGKey(seed)).success_examples
    assert n_seeds == 1
    np.testing.assert_allclose(state.success_examples[0], drawn(2), atol=1e-6)
    assert not np.allclose(state.success_examples[0], drawn(0))
    pooled = str(tmp_path / "pooled")
    main(["--merge", out, more, "--out", pooled])
    sparse = np.load(os.path.join(pooled, "sparse", "curves.npz"))
    first = np.load(os.path.join(out, "sparse", "curves.npz"))
    second = np.load(os.path.join(more, "sparse", "curves.npz"))
    assert sparse["eval.success_rate"].shape == (2, 3)
    np.testing.assert_array_equal(
        sparse["eval.final_distance"][:, :2], first["eval.final_distance"]
    )
    np.testing.assert_array_equal(
        sparse["eval.final_distance"][:, 2], second["eval.final_distance"][:, 0]
    )
    assert np.load(os.path.join(pooled, "mural", "curves.npz"))["eval.success_rate"].shape == (2, 2)
    text = open(os.path.join(pooled, "report.md")).read()
    assert "| sparse | 0-2 |" in text and "| mural | 0-1 |" in text
    assert json.load(open(os.path.join(pooled, "sparse", "seeds.json"))) == [0, 1, 2]
    # The same seeds twice (a run pooled with itself, or a pooled run with one of its
    # sources) are refused, naming the seeds, and nothing is written.
    for runs in ([out, out], [pooled, more]):
        with pytest.raises(SystemExit, match=r"seed\(s\) \[.*\] appear in more than one"):
            main(["--merge", *runs, "--out", str(tmp_path / "twice")])
        assert not os.path.exists(tmp_path / "twice")
    # The pooled run keeps its sources' machine records, and its report names the machine.
    machines = [json.loads(line) for line in open(os.path.join(pooled, "machines.jsonl"))]
    assert [m["run"] for m in machines] == [out, more]
    assert f"jax {jax.__version__}: 2" in text and "more than one kind" not in text
    with open(os.path.join(more, "machines.jsonl"), "a") as f:  # a resume on another machine
        other = {k: v for k, v in machines[1].items() if k != "run"}
        f.write(json.dumps({**other, "processor": "Other CPU"}) + "\n")
    main(["--merge", out, more, "--out", str(tmp_path / "pooled2")])
    text = open(os.path.join(tmp_path / "pooled2", "report.md")).read()
    assert "Other CPU" in text and "more than one kind of machine" in text


def test_merge_refuses_runs_of_other_settings(tmp_path):
    """Pooling seeds is only meaningful for one config: a different one is named, not mixed."""
    for name, steps in (("a", 400), ("b", 600)):
        os.makedirs(tmp_path / name / "sparse")
        config_lib.save_json(tiny(steps=steps), str(tmp_path / name / "config.json"))
        np.savez(tmp_path / name / "sparse" / "curves.npz", env_steps=np.zeros((2, 1)))
    with pytest.raises(SystemExit, match="other settings.*steps"):
        main(["--merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "c")])
    assert not os.path.exists(tmp_path / "c")


def test_bad_config_or_steps_are_refused_before_anything_is_written(tmp_path):
    cfg_path = tmp_path / "tiny.json"
    with open(cfg_path, "w") as f:
        json.dump(config_lib.to_dict(tiny(steps=400)), f)
    bad = str(tmp_path / "bad")
    with pytest.raises(SystemExit, match="steps=500 is invalid; allowed: a multiple of eval_every"):
        main(["--config", str(cfg_path), "--methods", "vice", "--steps", "500", "--out", bad])
    with pytest.raises(SystemExit, match="config='nope' is neither a file nor a known"):
        main(["--config", "nope", "--out", bad])
    assert not os.path.exists(bad)


def test_resumed_reproduction_equals_uninterrupted(tmp_path, capsys):
    """A reproduction cut off after its checkpoint (with a metrics row written past it) and
    resumed to more steps gives the curves of one run straight through, compiled seeds and all."""
    cfg_path = tmp_path / "tiny.json"
    with open(cfg_path, "w") as f:
        json.dump(config_lib.to_dict(tiny(steps=400, checkpoint_every=400)), f)
    args = ["--config", str(cfg_path), "--methods", "vice", "--seeds", "2"]
    cut, straight = str(tmp_path / "cut"), str(tmp_path / "straight")
    main(args + ["--out", cut])
    assert os.listdir(os.path.join(cut, "vice", "checkpoints")) == ["400"]
    with open(os.path.join(cut, "vice", "seed0", "metrics.csv"), "a") as f:
        f.write("600" + ",0" * (len(open(f.name).readline().split(",")) - 1) + "\n")
    with pytest.raises(SystemExit, match="steps=200 is invalid.*allowed: >= 400"):
        main(["--out", cut, "--resume", "--steps", "200"])
    saved = open(os.path.join(cut, "config.json")).read()
    with pytest.raises(SystemExit, match="steps=700 is invalid; allowed: a multiple of eval"):
        main(["--out", cut, "--resume", "--steps", "700"])
    assert open(os.path.join(cut, "config.json")).read() == saved  # refused: nothing written
    capsys.readouterr()
    main(["--out", cut, "--resume", "--steps", "800"])
    trained = [line.split("]")[0].split("[")[1].strip() for line in capsys.readouterr().out
               .splitlines() if line.strip().startswith("vice [")]  # fmt: skip
    assert trained == ["600/800", "800/800"]  # continued from the checkpoint, not rerun
    # One machine record per start and per resume (the refused resume adds none).
    machines = [json.loads(line) for line in open(os.path.join(cut, "machines.jsonl"))]
    assert len(machines) == 2
    assert machines[1]["packages"]["jax"] == jax.__version__
    assert machines[1]["backend"] == "cpu" and machines[1]["processor"]
    main(args + ["--steps", "800", "--out", straight])
    a = np.load(os.path.join(cut, "vice", "curves.npz"))
    b = np.load(os.path.join(straight, "vice", "curves.npz"))
    assert a["env_steps"][:, 0].tolist() == [200, 400, 600, 800]
    for key in b.files:
        if key != "train.steps_per_second":
            np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-7, err_msg=key)
    rows = open(os.path.join(cut, "vice", "seed0", "metrics.csv")).read().split()
    assert [r.split(",")[0] for r in rows[1:]] == ["200", "400", "600", "800"]
    assert os.path.getsize(os.path.join(cut, "reward_heatmap.png")) > 1000
    with pytest.raises(SystemExit, match="no resumable reproduction"):
        main(["--out", str(tmp_path), "--resume"])


def test_support_probe_reads_a_reproduction_checkpoint(tmp_path):
    """The probe restores a reproduction's mural seeds; far from all data the reward with the
    run's supports is the query alone's (zero kernel weight), and the table covers every seed."""
    from experiments.support_probe import probe

    cfg_path = tmp_path / "tiny.json"
    with open(cfg_path, "w") as f:
        json.dump(config_lib.to_dict(tiny(steps=200, method="mural")), f)
    run = str(tmp_path / "run")
    main(["--config", str(cfg_path), "--methods", "mural", "--seeds", "2", "--out", run])
    steps, rows = probe(run, {"far corner": (40.0, -40.0), "start": (-3.0, -3.0)}, draws=2)
    assert steps == 200 and len(rows) == 4 and {r[0] for r in rows} == {0, 1}
    for _, name, p_init, with_pool, positives, alone in rows:
        assert all(0.0 <= v <= 1.0 for v in (p_init, with_pool, positives, alone))
        if name == "far corner":
            assert abs(with_pool - alone) < 1e-4 and abs(positives - alone) < 1e-4
    # Continued meta-training (here with novel queries) moves the initialisation; a bad
    # fraction names the valid range.
    pts = {"start": (-3.0, -3.0)}
    before = [r for r in rows if r[1] == "start"]
    _, after = probe(run, pts, draws=2, meta_epochs=2, novel_queries=0.5)
    assert all(abs(a[2] - b[2]) > 1e-6 for a, b in zip(after, before, strict=True))
    with pytest.raises(config_lib.ConfigError, match="novel_query_fraction.*0 <= fraction <= 1"):
        probe(run, pts, draws=2, meta_epochs=1, novel_queries=1.5)
    with pytest.raises(ValueError, match="width=8 needs"):
        probe(run, pts, width=8)  # a fresh classifier needs meta-training of some kind
    # --history: a fresh classifier meta-trained on the run's schedule over its replay history
    # does as many meta-epochs as the run did; --width scales the inner lr by width.
    from experiments.reproduce import load_latest
    from experiments.support_probe import _replay_history, _widened

    cfg, trainer, state, seeds = load_latest(run, "mural")
    method, fresh = _widened(trainer.method, state, 16, None)
    assert int(np.asarray(fresh.reward.meta_epochs).max()) == 0
    hist = _replay_history(cfg, method, fresh, seeds)
    np.testing.assert_array_equal(hist.reward.meta_epochs, state.reward.meta_epochs)
    assert _widened(trainer.method, state, 32, None)[0].config.inner_lr == pytest.approx(
        trainer.method.config.inner_lr / 2
    )
    # Every seed's reward map at the checkpoint: its own state (the seeds' maps differ), its own
    # eval success; a method the run did not checkpoint names the ones it did.
    from experiments.heatmap import plot_runs, seed_maps

    [(_, maps)] = plot_runs([run], str(tmp_path / "maps.png"))
    assert os.path.getsize(tmp_path / "maps.png") > 1000
    assert [(m[0], m[1]) for m in maps] == [(0, 200), (1, 200)]
    for seed, _, (xs, ys, r), visited, examples, sr, arrows in maps:
        assert r.shape == (len(ys), len(xs)) and np.all((r >= 0) & (r <= 1)) and arrows is None
        assert visited.shape[1] == 2 and examples.shape[1] == 2
        with open(os.path.join(run, "mural", f"seed{seed}", "metrics.csv")) as f:
            last = list(csv.DictReader(f))[-1]
        assert sr == pytest.approx(float(last["eval/success_rate"]))
    assert np.abs(maps[0][2][2] - maps[1][2][2]).max() > 1e-3
    with pytest.raises(SystemExit, match="no vice/checkpoints.*'mural'"):
        seed_maps(run, "vice")
    # --value: the critic's min twin Q at the policy's mode action, at each seed's own state,
    # with the mode action as arrows.
    [(_, vmaps)] = plot_runs([run], str(tmp_path / "values.png"), value=True)
    assert os.path.getsize(tmp_path / "values.png") > 1000
    seed_state = jax.tree.map(lambda x: x[1], state)
    (xs, ys, v), (gx, gy, ax, ay) = vmaps[1][2], vmaps[1][6]
    pts = jnp.array([[xs[3], ys[70]], [gx[2, 5], gy[2, 5]]], jnp.float32)
    act = trainer.agent.act(seed_state.sac, pts, None)
    q = trainer.agent.nets.q.apply(seed_state.sac.q_params, pts, act)
    np.testing.assert_allclose(v[70, 3], q[0].min(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([ax[2, 5], ay[2, 5]], act[1], rtol=1e-5, atol=1e-6)
    assert np.abs(vmaps[0][2][2] - v).max() > 1e-6
