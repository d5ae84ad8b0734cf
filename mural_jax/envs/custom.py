"""Your own task without editing the library: any Brax `Env` plus a file of success states.

Environment specs accepted by `make_env`:
- a registered name (`zigzag_maze`);
- `brax:NAME`, an environment from Brax's own registry (`brax:reacher`);
- `module.path:Attr`, an importable `Task` or Brax `Env` class (or factory);
- `maze:PATH`, a point maze from a JSON layout or an ASCII grid (see `load_maze`).

A Brax environment that is not a `Task` needs `success_examples=PATH` (`.npy`, `.npz` or `.csv`,
shape (N, obs_dim) or (N, k) with `classifier_obs` naming the k observation columns the
classifier sees). Such a task has no success function: evaluation reports the distance of the
final state to the nearest success example (in classifier space) and the learned reward.
"""

from __future__ import annotations

import importlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import Env, State

from mural_jax.envs.base import Task
from mural_jax.envs.point_maze import MazeLayout, PointMaze

MIN_SUCCESS_EXAMPLES = 2


class TaskError(ValueError):
    """A task spec, success-example file or layout that cannot be used (message says why)."""


def parse_obs_slice(spec: str | None, obs_dim: int) -> tuple[int, int] | None:
    """'0:2' -> (0, 2); None -> None (the whole observation)."""
    if spec is None:
        return None
    try:
        lo_s, hi_s = spec.split(":")
        lo = int(lo_s) if lo_s.strip() else 0
        hi = int(hi_s) if hi_s.strip() else obs_dim
    except ValueError:
        raise TaskError(
            f"classifier_obs={spec!r} is invalid; allowed: 'START:STOP' with integers, e.g. '0:2'"
        ) from None
    if not 0 <= lo < hi <= obs_dim:
        raise TaskError(
            f"classifier_obs={spec!r} is invalid; allowed: 0 <= START < STOP <= {obs_dim} "
            f"(the observation size)"
        )
    return lo, hi


def load_success_examples(path: str, obs_dim: int, obs_slice: tuple[int, int] | None):
    """Success states from .npy, .npz (first array) or .csv, checked against the task."""
    if not os.path.exists(path):
        raise TaskError(f"success examples file {path!r} does not exist")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            data = np.load(path)
        elif ext == ".npz":
            with np.load(path) as z:
                if not z.files:
                    raise TaskError(f"success examples file {path!r} holds no arrays")
                data = z[z.files[0]]
        elif ext == ".csv":
            data = np.loadtxt(path, delimiter=",", ndmin=2) if os.path.getsize(path) else None
        else:
            raise TaskError(
                f"success examples file {path!r}: unknown extension {ext!r}; "
                "allowed: .npy, .npz, .csv"
            )
    except TaskError:
        raise
    except Exception as e:
        raise TaskError(f"success examples file {path!r} could not be read: {e}") from None
    k = obs_dim if obs_slice is None else obs_slice[1] - obs_slice[0]
    expected = f"(N, {obs_dim})" + ("" if obs_slice is None else f" or (N, {k})")
    if data is None or data.size == 0:
        raise TaskError(f"success examples file {path!r} is empty; expected shape {expected}")
    data = np.asarray(data, np.float32)
    if data.ndim != 2 or data.shape[1] not in (obs_dim, k):
        raise TaskError(
            f"success examples file {path!r} has shape {data.shape}; expected {expected} "
            f"(observation size {obs_dim}"
            + ("" if obs_slice is None else f", classifier_obs {obs_slice[0]}:{obs_slice[1]}")
            + ")"
        )
    if not np.all(np.isfinite(data)):
        bad = np.argwhere(~np.isfinite(data))[0]
        raise TaskError(
            f"success examples file {path!r} holds NaN/inf (first at row {bad[0]}, column {bad[1]})"
        )
    if data.shape[0] < MIN_SUCCESS_EXAMPLES:
        raise TaskError(
            f"success examples file {path!r} has {data.shape[0]} example(s); "
            f"need at least {MIN_SUCCESS_EXAMPLES}"
        )
    return data


class ExampleTask(Task):
    """Any Brax `Env` made a MURAL task by a set of success states (no success function).

    Success examples stored as full observations or as the classifier slice; the classifier
    sees `classifier_obs`. `goal_distance` is the distance to the nearest success example.
    """

    has_success_fn = False

    def __init__(
        self,
        env: Env,
        examples: np.ndarray,
        classifier_obs: tuple[int, int] | None = None,
        episode_length: int = 1000,
    ):
        self.env = env
        self.classifier_obs = classifier_obs
        self.episode_length = episode_length
        obs_dim = env.observation_size
        full = examples.shape[1] == obs_dim and classifier_obs is not None
        feats = examples[:, classifier_obs[0] : classifier_obs[1]] if full else examples
        self._examples = jnp.asarray(examples)
        self._features = jnp.asarray(feats)
        self._examples_are_features = not full and classifier_obs is not None

    @property
    def observation_size(self) -> int:
        return self.env.observation_size

    @property
    def action_size(self) -> int:
        return self.env.action_size

    @property
    def backend(self) -> str:
        return getattr(self.env, "backend", "jax")

    def reset(self, rng: jax.Array) -> State:
        return self.env.reset(rng)

    def step(self, state: State, action: jax.Array) -> State:
        return self.env.step(state, action)

    def success_examples(self, rng: jax.Array, n: int) -> jax.Array:
        """`n` of the file's examples (all of them first, then resampled), as observations.

        Examples given as the classifier slice are placed into a zero observation: only the
        classifier reads them.
        """
        m = self._examples.shape[0]
        idx = jnp.where(jnp.arange(n) < m, jnp.arange(n) % m, jax.random.randint(rng, (n,), 0, m))
        if not self._examples_are_features:
            return self._examples[idx]
        lo, hi = self.classifier_obs
        obs = jnp.zeros((n, self.observation_size), jnp.float32)
        return obs.at[:, lo:hi].set(self._features[idx])

    def is_success(self, obs: jax.Array) -> jax.Array:
        raise NotImplementedError("this task has no success function")

    def goal_distance(self, obs: jax.Array) -> jax.Array:
        """Distance (classifier space) to the nearest success example."""
        f = self.classifier_features(obs)
        d = jnp.linalg.norm(f[..., None, :] - self._features, axis=-1)
        return d.min(axis=-1)

    def dense_reward(self, obs: jax.Array, next_obs: jax.Array) -> jax.Array:
        raise NotImplementedError("this task has no oracle reward")


# -- User mazes --------------------------------------------------------------------------------


def load_maze(path: str) -> MazeLayout:
    """A maze from a JSON layout or an ASCII grid.

    JSON: {"walls": [[x0, y0, x1, y1], ...], "start": [x, y], "goal": [x, y], ...} with any
    other `MazeLayout` field optional. ASCII (.txt): rows of '#' (wall), '.' or ' ' (free), 'S'
    (start), 'G' (goal), laid over the arena [-4, 4]^2; runs of '#' become wall segments through
    the cells' centres (so walls are 2 * point_radius thick, as in the paper's mazes).
    """
    if not os.path.exists(path):
        raise TaskError(f"maze layout {path!r} does not exist")
    try:
        if path.endswith(".json"):
            with open(path) as f:
                data = json.load(f)
            if not isinstance(data, dict) or not {"walls", "start", "goal"} <= set(data):
                raise TaskError(f"maze layout {path!r} needs the keys walls, start, goal")
            data["walls"] = tuple(tuple(float(v) for v in w) for w in data["walls"])
            for key in ("start", "goal", "bounds"):
                if key in data:
                    data[key] = tuple(float(v) for v in data[key])
            return MazeLayout(**data)
        with open(path) as f:
            rows = [r.rstrip("\n") for r in f if r.strip()]
        return _ascii_layout(rows, path)
    except TaskError:
        raise
    except (TypeError, ValueError) as e:
        raise TaskError(f"maze layout {path!r} is invalid: {e}") from None


def _ascii_layout(rows: list[str], path: str) -> MazeLayout:
    if not rows:
        raise TaskError(f"maze layout {path!r} is empty")
    h, w = len(rows), max(len(r) for r in rows)
    grid = [r.ljust(w, ".") for r in rows]
    lo, hi = -4.0, 4.0
    cx = lambda j: lo + (j + 0.5) * (hi - lo) / w
    cy = lambda i: hi - (i + 0.5) * (hi - lo) / h  # first row is the top
    found = {c: [(i, j) for i in range(h) for j in range(w) if grid[i][j] == c] for c in "SG"}
    for c, name in (("S", "start"), ("G", "goal")):
        if len(found[c]) != 1:
            raise TaskError(f"maze layout {path!r} needs exactly one {c!r} ({name})")
    unknown = {c for r in grid for c in r} - set("#. SG")
    if unknown:
        raise TaskError(f"maze layout {path!r} has unknown cells {sorted(unknown)}; use # . S G")
    walls, covered = [], set()
    for i in range(h):  # horizontal runs (length >= 2)
        j = 0
        while j < w:
            if grid[i][j] == "#":
                k = j
                while k + 1 < w and grid[i][k + 1] == "#":
                    k += 1
                if k > j:
                    walls.append((cx(j), cy(i), cx(k), cy(i)))
                    covered |= {(i, m) for m in range(j, k + 1)}
                j = k + 1
            else:
                j += 1
    for j in range(w):  # vertical runs, and single cells not yet covered
        i = 0
        while i < h:
            if grid[i][j] == "#":
                k = i
                while k + 1 < h and grid[k + 1][j] == "#":
                    k += 1
                if k > i or (i, j) not in covered:
                    walls.append((cx(j), cy(i), cx(j), cy(k)))
                i = k + 1
            else:
                i += 1
    (si, sj), (gi, gj) = found["S"][0], found["G"][0]
    return MazeLayout(walls=tuple(walls), start=(cx(sj), cy(si)), goal=(cx(gj), cy(gi)))


# -- Resolving an env spec ---------------------------------------------------------------------


def is_custom_spec(name: str) -> bool:
    return ":" in name


def make_custom(
    name: str,
    success_examples: str | None = None,
    classifier_obs: str | None = None,
    episode_length: int | None = None,
) -> Task:
    """Build a task from `brax:NAME`, `maze:PATH` or `module.path:Attr` (see module doc)."""
    kind, _, target = name.partition(":")
    if kind == "maze":
        task = PointMaze(load_maze(target))
    elif kind == "brax":
        from brax import envs as brax_envs

        valid = sorted(brax_envs._envs)  # noqa: SLF001 (brax has no public listing)
        if target not in valid:
            raise TaskError(
                f"env={name!r}: unknown Brax environment {target!r}; valid: {', '.join(valid)}"
            )
        task = brax_envs.get_environment(target)
    else:
        try:
            obj = getattr(importlib.import_module(kind), target)
        except (ImportError, AttributeError) as e:
            raise TaskError(
                f"env={name!r} could not be imported ({e}); expected 'module.path:Attr'"
            ) from None
        task = obj() if callable(obj) and not isinstance(obj, Env) else obj
        if not isinstance(task, Env):
            raise TaskError(f"env={name!r} is {type(task).__name__}, not a Brax Env or Task")
    if isinstance(task, Task):
        for flag, value in (("success_examples", success_examples),
                            ("classifier_obs", classifier_obs)):  # fmt: skip
            if value is not None:
                raise TaskError(
                    f"{flag}={value!r} is invalid for {name!r}, a Task that defines its own "
                    "success examples and classifier features; drop the flag"
                )
        return task
    if success_examples is None:
        raise TaskError(
            f"env={name!r} is a plain Brax Env: give --success-examples FILE (.npy/.npz/.csv)"
        )
    obs_dim = task.observation_size
    if not isinstance(obs_dim, int):
        raise TaskError(f"env={name!r} has dict observations; a flat observation is required")
    obs_slice = parse_obs_slice(classifier_obs, obs_dim)
    examples = load_success_examples(success_examples, obs_dim, obs_slice)
    return ExampleTask(task, examples, obs_slice, episode_length or 1000)
