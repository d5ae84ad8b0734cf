"""Your own task: user mazes from files, Brax envs with success states from a file, bad input."""

import csv
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mural_jax.envs import PointMaze, TaskError, load_maze, make_env
from mural_jax.train import main

TINY = ["--steps", "400", "--eval-every", "200", "--num-envs", "4", "--random-steps", "100",
        "--replay-capacity", "1000", "--eval-episodes", "4", "--sac.hidden", "16,16",
        "--sac.batch-size", "32", "--updates-per-step", "0.25", "--classifier.hidden", "16,16",
        "--classifier.reference-size", "64", "--classifier.update-every", "100",
        "--classifier.initial-epochs", "2", "--meta-nml.tasks-per-epoch", "4",
        "--meta-nml.num-query-points", "16", "--meta-nml.inference-chunk", "16"]  # fmt: skip

U_MAZE = {
    "walls": [[-2.0, 0.0, 4.0, 0.0]],
    "start": [2.0, -2.0],
    "goal": [2.0, 2.0],
    "episode_length": 60,
}

ASCII = """\
#########
#...#..G#
#.#.#.###
#.#...#.#
#S#.....#
#########
"""


def _crosses(p0, p1, seg):
    """Does the move p0 -> p1 cross the axis-aligned thin segment (sampled densely)?"""
    x0, y0, x1, y1 = seg
    ts = np.linspace(0, 1, 200)[:, None]
    pts = p0 + ts * (p1 - p0)
    if x0 == x1:  # vertical wall
        inside = (pts[:, 1] >= min(y0, y1)) & (pts[:, 1] <= max(y0, y1))
        side = np.sign(pts[:, 0] - x0)
    else:
        inside = (pts[:, 0] >= min(x0, x1)) & (pts[:, 0] <= max(x0, x1))
        side = np.sign(pts[:, 1] - y0)
    s = side[inside & (side != 0)]
    return len(s) > 0 and s.min() != s.max()


def _assert_walls_block(task: PointMaze, n=3000):
    rng = np.random.default_rng(0)
    boxes = task.layout.boxes()
    pos = rng.uniform(-4, 4, (n, 2)).astype(np.float32)
    free = ~np.any(
        (pos[:, None, 0] > boxes[:, 0]) & (pos[:, None, 0] < boxes[:, 1])
        & (pos[:, None, 1] > boxes[:, 2]) & (pos[:, None, 1] < boxes[:, 3]), axis=1
    )  # fmt: skip
    pos = pos[free]
    act = rng.uniform(-1, 1, pos.shape).astype(np.float32)
    new = np.asarray(jax.jit(jax.vmap(task.move))(jnp.asarray(pos), jnp.asarray(act)))
    for p0, p1 in zip(pos, new, strict=True):
        for seg in task.layout.walls:
            assert not _crosses(p0, p1, seg), (p0, p1, seg)


def test_json_maze_trains_through_the_cli_and_its_walls_block(tmp_path):
    path = tmp_path / "u_maze.json"
    path.write_text(json.dumps(U_MAZE))
    task = make_env(f"maze:{path}")
    assert task.layout.walls == ((-2.0, 0.0, 4.0, 0.0),) and task.episode_length == 60
    _assert_walls_block(task)
    # Shortest-path oracle goes around the wall: far more than the straight-line 4.
    assert float(task.geodesic_distance(jnp.array([2.0, -2.0]))) > 10.0
    out = str(tmp_path / "run")
    main(["--env", f"maze:{path}", "--method", "mural", *TINY, "--out", out])
    rows = list(csv.DictReader(open(os.path.join(out, "metrics.csv"))))
    assert [int(r["env_steps"]) for r in rows] == [200, 400]
    assert np.isfinite(float(rows[-1]["eval/success_rate"]))


def test_ascii_maze_layout(tmp_path):
    path = tmp_path / "maze.txt"
    path.write_text(ASCII)
    layout = load_maze(str(path))
    task = PointMaze(layout)
    # 9 columns x 6 rows over [-4, 4]^2: S at column 1, row 4; G at column 7, row 1.
    np.testing.assert_allclose(layout.start, (-4 + 1.5 * 8 / 9, 4 - 4.5 * 8 / 6), atol=1e-6)
    np.testing.assert_allclose(layout.goal, (-4 + 7.5 * 8 / 9, 4 - 1.5 * 8 / 6), atol=1e-6)
    assert len(layout.walls) >= 8
    _assert_walls_block(task)
    assert np.isfinite(float(task.geodesic_distance(jnp.asarray(layout.start))))


def test_brax_env_with_success_states_file_runs_end_to_end(tmp_path, capsys):
    examples = np.stack([np.linspace(0, 0.1, 20), np.full(20, 2.0)], -1).astype(np.float32)
    np.save(tmp_path / "states.npy", examples)
    out = str(tmp_path / "run")
    main(["--env", "brax:fast", "--method", "vice", "--success-examples",
          str(tmp_path / "states.npy"), "--classifier-obs", "1:2", "--episode-length", "50",
          *TINY, "--out", out])  # fmt: skip
    printed = capsys.readouterr().out
    assert "no success function" in printed
    rows = list(csv.DictReader(open(os.path.join(out, "metrics.csv"))))
    last = rows[-1]
    assert last["eval/success_rate"] == "nan"
    # With no success function the distance is to the nearest success example: computed
    # (finite), unlike the success rate.
    assert math.isfinite(float(last["eval/final_distance"]))
    assert 0.0 <= float(last["eval/learned_reward"]) <= 1.0


def test_success_examples_as_classifier_slice_and_csv(tmp_path):
    np.savetxt(tmp_path / "s.csv", np.full((5, 1), 2.0), delimiter=",")
    task = make_env("brax:fast", success_examples=str(tmp_path / "s.csv"), classifier_obs="1:2")
    ex = task.success_examples(jax.random.PRNGKey(0), 8)
    assert ex.shape == (8, 2)
    np.testing.assert_allclose(task.classifier_features(ex), 2.0)
    np.testing.assert_allclose(task.goal_distance(jnp.array([[0.0, 2.5]])), [0.5], atol=1e-6)


@pytest.mark.parametrize(
    "content,extra,message",
    [
        (np.zeros((10, 3)), [], "has shape (10, 3); expected (N, 2)"),
        (np.zeros((10, 3)), ["--classifier-obs", "0:1"], "expected (N, 2) or (N, 1)"),
        (np.array([[0.0, 1.0], [np.nan, 1.0], [0.0, 1.0]]), [], "NaN/inf (first at row 1"),
        (np.zeros((1, 2)), [], "has 1 example(s); need at least 2"),
        (np.zeros((0, 2)), [], "is empty"),
        (np.zeros((10, 2)), ["--classifier-obs", "0:5"], "classifier_obs='0:5' is invalid"),
        (np.zeros((10, 2)), ["--method", "dense"], "method='dense' is invalid"),
    ],
)
def test_bad_success_examples_fail_fast_with_a_clear_message(
    tmp_path, capsys, content, extra, message
):
    path = tmp_path / "states.npy"
    np.save(path, content)
    argv = ["--env", "brax:fast", "--method", "mural", "--success-examples", str(path), *TINY]
    with pytest.raises(SystemExit) as e:
        main([*argv, *extra, "--out", str(tmp_path / "run")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err, err
    if "shape" in message or "NaN" in message or "empty" in message or "example(s)" in message:
        assert str(path) in err
    assert not os.path.exists(tmp_path / "run")  # nothing written, nothing compiled


@pytest.mark.parametrize(
    "spec,kwargs,message",
    [
        ("brax:nope", {"success_examples": "x.npy"}, "unknown Brax environment 'nope'"),
        ("brax:fast", {}, "give --success-examples"),
        ("brax:fast", {"success_examples": "/nonexistent.npy"}, "does not exist"),
        ("brax:fast", {"success_examples": __file__}, "unknown extension '.py'"),
        ("no_such_module:Env", {}, "could not be imported"),
        ("maze:/nonexistent.json", {}, "does not exist"),
    ],
)
def test_bad_env_specs(spec, kwargs, message):
    with pytest.raises(TaskError, match=None) as e:
        make_env(spec, **kwargs)
    assert message in str(e.value)


def test_import_path_env(tmp_path, monkeypatch):
    """`module.path:Attr` builds a user's Task class (here: a maze defined in user code)."""
    mod = tmp_path / "my_tasks.py"
    mod.write_text(
        "from mural_jax.envs import MazeLayout, PointMaze\n"
        "def Corridor():\n"
        "    return PointMaze(MazeLayout(walls=(), start=(-3.0, 0.0), goal=(3.0, 0.0)))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    task = make_env("my_tasks:Corridor")
    assert isinstance(task, PointMaze) and task.layout.goal == (3.0, 0.0)


def test_classifier_obs_is_rejected_for_tasks_with_their_own_features(tmp_path):
    path = tmp_path / "u.json"
    path.write_text(json.dumps(U_MAZE))
    with pytest.raises(TaskError, match="classifier_obs='0:1' is invalid"):
        make_env(f"maze:{path}", classifier_obs="0:1")
