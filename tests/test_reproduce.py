"""Reproduction runner: seeds vmapped, per-seed metrics, report with CIs, figures."""

import json
import os

import numpy as np
import pytest

from experiments.reproduce import bootstrap_ci, iqm, main
from mural_jax import config as config_lib
from tests.test_train import tiny


def test_bootstrap_ci_and_iqm():
    x = np.array([0.0, 0.0, 1.0, 1.0])
    lo, hi = bootstrap_ci(x)
    assert 0.0 <= lo < 0.5 < hi <= 1.0
    assert bootstrap_ci(np.full(5, 0.7)) == (0.7, 0.7)
    assert iqm(np.array([0.0, 0.5, 0.5, 1.0, 100.0, -100.0, 0.5, 0.5])) == 0.5


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
    for fig in ("success.png", "reward_heatmap.png"):
        assert os.path.getsize(os.path.join(out, fig)) > 1000

    # More seeds later (--first-seed), pooled with the first run (--merge): sparse gets seeds
    # 0, 1 from the first run and seed 2 from the second; mural keeps its 2.
    more = str(tmp_path / "more")
    main(["--config", str(cfg_path), "--methods", "sparse", "--seeds", "1", "--first-seed", "2",
          "--out", more])  # fmt: skip
    assert sorted(os.listdir(os.path.join(more, "sparse"))) == ["curves.npz", "seed2"]
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
    assert "| sparse |" in open(os.path.join(pooled, "report.md")).read()


def test_merge_refuses_runs_of_other_settings(tmp_path):
    """Pooling seeds is only meaningful for one config: a different one is named, not mixed."""
    for name, steps in (("a", 400), ("b", 600)):
        os.makedirs(tmp_path / name / "sparse")
        config_lib.save_json(tiny(steps=steps), str(tmp_path / name / "config.json"))
        np.savez(tmp_path / name / "sparse" / "curves.npz", env_steps=np.zeros((2, 1)))
    with pytest.raises(SystemExit, match="other settings.*steps"):
        main(["--merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "c")])
    assert not os.path.exists(tmp_path / "c")
