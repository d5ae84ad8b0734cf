"""Reproduction runner: seeds vmapped, per-seed metrics, report with CIs, figures."""

import json
import os

import numpy as np

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
