"""2D point mazes (the paper's zigzag and spiral mazes), with layouts as data.

Geometry follows multiworld's Point2DWallEnv: a point of radius 0.15 in the box [-4, 4]^2 moves
by `clip(action, -1, 1) * 0.5`; each wall is a segment inflated by the point radius into an
axis-aligned box. Collision is a swept test: the point moves to the first box face it would
enter, stops on that axis and slides along the face with the rest of the motion (at most two
faces in 2D), so no step, however long or close to a wall or corner, ever crosses a wall.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property

import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import State

from mural_jax.envs.base import Task

Segment = tuple[float, float, float, float]  # x0, y0, x1, y1 (axis-aligned)

_OUTER = 1.0e3  # extent of the four boxes that stand for the arena's outer walls


@dataclasses.dataclass(frozen=True)
class MazeLayout:
    """A point maze as data: walls are axis-aligned segments; everything else has a default."""

    walls: tuple[Segment, ...]
    start: tuple[float, float]
    goal: tuple[float, float]
    bounds: tuple[float, float] = (-4.0, 4.0)
    point_radius: float = 0.15
    action_scale: float = 0.5
    episode_length: int = 100
    success_radius: float = 0.5
    #: Reset position = start + U(-reset_noise, reset_noise)^2 (0: the original's fixed start).
    reset_noise: float = 0.0
    #: Success examples are states within this distance of the goal.
    success_example_tolerance: float = 0.05
    #: Grid spacing of the shortest-path (oracle) distance field.
    grid_spacing: float = 0.05
    #: Allow the start inside an inflated wall, as in the original spiral. Collisions block only
    #: entry into a box, so the point leaves such a box on any side and never re-enters it.
    start_in_wall: bool = False

    def __post_init__(self):
        for w in self.walls:
            if len(w) != 4 or (w[0] != w[2] and w[1] != w[3]):
                raise ValueError(f"wall {w} must be an axis-aligned segment (x0, y0, x1, y1)")
        lo, hi = self.bounds
        if not lo < hi:
            raise ValueError(f"bounds {self.bounds} must satisfy low < high")
        for name in ("start", "goal"):
            p = getattr(self, name)
            if not all(lo <= c <= hi for c in p):
                raise ValueError(f"{name} {p} lies outside the arena {self.bounds}")
            if name == "start" and self.start_in_wall:
                continue
            if inside_any(np.asarray(p, np.float64), self.boxes()):
                raise ValueError(
                    f"{name} {p} lies inside an (inflated) wall"
                    + (" (start_in_wall=True allows that for the start)" if name == "start" else "")
                )

    def boxes(self) -> np.ndarray:
        """Walls inflated by the point radius: (W, 4) rows of (xmin, xmax, ymin, ymax)."""
        r = self.point_radius
        rows = [
            (min(x0, x1) - r, max(x0, x1) + r, min(y0, y1) - r, max(y0, y1) + r)
            for x0, y0, x1, y1 in self.walls
        ]
        return np.asarray(rows, np.float64).reshape(-1, 4)

    def collision_boxes(self) -> np.ndarray:
        """Inflated walls plus four boxes for the arena's outer walls (not inflated)."""
        lo, hi = self.bounds
        o = _OUTER
        outer = [(-o, lo, -o, o), (hi, o, -o, o), (-o, o, -o, lo), (-o, o, hi, o)]
        return np.concatenate([self.boxes(), np.asarray(outer, np.float64)], axis=0)


def inside_any(p: np.ndarray, boxes: np.ndarray) -> bool:
    """Strictly inside any box (xmin, xmax, ymin, ymax); touching a face is allowed."""
    inside = (p[0] > boxes[:, 0]) & (p[0] < boxes[:, 1]) & (p[1] > boxes[:, 2])
    return bool(np.any(inside & (p[1] < boxes[:, 3])))


# -- Collision -------------------------------------------------------------------------------


def _first_hit(pos: jax.Array, delta: jax.Array, boxes: jax.Array):
    """Earliest entry of the segment pos -> pos + delta into any box (slab method).

    Returns (t in [0, 1], axis of the entered face, the face's coordinate, whether a hit).
    A point on a face moving into the box is a hit at t = 0; moving along a face is not.
    """
    lo, hi = boxes[:, 0::2], boxes[:, 1::2]  # (W, 2): (xmin, ymin), (xmax, ymax)
    moving = delta != 0.0
    inv = 1.0 / jnp.where(moving, delta, 1.0)
    forward = delta > 0.0
    t_near = jnp.where(forward, (lo - pos) * inv, (hi - pos) * inv)
    t_far = jnp.where(forward, (hi - pos) * inv, (lo - pos) * inv)
    in_slab = (pos > lo) & (pos < hi)
    t_near = jnp.where(moving, t_near, jnp.where(in_slab, -jnp.inf, jnp.inf))
    t_far = jnp.where(moving, t_far, jnp.where(in_slab, jnp.inf, -jnp.inf))
    t_enter = jnp.max(t_near, axis=1)
    t_exit = jnp.min(t_far, axis=1)
    hit = (t_enter < t_exit) & (t_enter >= -1e-6) & (t_enter <= 1.0)
    t_masked = jnp.where(hit, t_enter, jnp.inf)
    j = jnp.argmin(t_masked)
    axis = jnp.argmax(t_near[j])
    face = jnp.where(forward[axis], lo[j, axis], hi[j, axis])
    return jnp.clip(t_masked[j], 0.0, 1.0), axis, face, jnp.isfinite(t_masked[j])


def move(pos: jax.Array, delta: jax.Array, boxes: jax.Array) -> jax.Array:
    """Move a point by `delta` among boxes: stop at the first face, slide along it, repeat.

    Two passes suffice in 2D: each hit removes one axis from the remaining motion.
    """
    for _ in range(2):
        t, axis, face, hit = _first_hit(pos, delta, boxes)
        t = jnp.where(hit, t, 1.0)
        new = pos + delta * t
        on_axis = jnp.arange(2) == axis
        new = jnp.where(hit & on_axis, face, new)  # snap exactly onto the face: never inside
        rest = jnp.where(on_axis, 0.0, delta * (1.0 - t))
        pos, delta = new, jnp.where(hit, rest, 0.0)
    return pos


# -- Shortest-path oracle ----------------------------------------------------------------------


def geodesic_field(layout: MazeLayout) -> tuple[np.ndarray, np.ndarray]:
    """Shortest-path distance to the goal around the maze's (inflated) walls on a grid, and
    its `fill_blocked` version for lookups with no free node (a `start_in_wall` start)."""
    field = shortest_path_field(layout.boxes(), layout.bounds, layout.goal, layout.grid_spacing)
    return field, fill_blocked(field, layout.grid_spacing)


def fill_blocked(field: np.ndarray, h: float) -> np.ndarray:
    """`field` with each +inf node given the distance of the nearest way straight out: along
    each of the four axis directions, the first finite node's value plus the steps to it; the
    least wins.

    Only for points whose grid cell has no free corner (inside a box): next to a face the free
    side's nodes are the right ones, and a blocked node filled from the wall's far side would
    leak that side's distance into the face.
    """
    n = field.shape[0]
    blocked = ~np.isfinite(field)
    best = np.full(field.shape, np.inf)
    for axis in (0, 1):
        for sign in (1, -1):
            found = ~blocked  # nodes whose ray is done (free nodes need none)
            for k in range(1, n):
                shifted = np.roll(field, -sign * k, axis=axis)
                # Rays leave the grid instead of wrapping around it.
                edge = np.arange(n) + sign * k
                off = (edge < 0) | (edge >= n)
                off = off[:, None] if axis == 0 else off[None, :]
                shifted = np.where(off, np.inf, shifted)
                hit = ~found & np.isfinite(shifted)
                best = np.where(hit, np.minimum(best, shifted + k * h), best)
                found = found | hit | off
                if found.all():
                    break
    return np.where(blocked, best, field)


def shortest_path_field(
    boxes: np.ndarray, bounds: tuple[float, float], goal: tuple[float, float], h: float
) -> np.ndarray:
    """Shortest-path distance to `goal` around boxes (xmin, xmax, ymin, ymax) on a square grid
    over `bounds` (8-connected Dijkstra). Shared by every maze-like task's dense oracle.

    Entries for grid nodes inside boxes are +inf. Grid node (i, j) is (lo + i*h, lo + j*h). A
    node on a box face is free to within float error: the point stops exactly on faces, and a
    face node counted as blocked once left cells next to the face with no free corner.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    lo, hi = bounds
    n = int(round((hi - lo) / h)) + 1
    xs = lo + h * np.arange(n)
    gx, gy = np.meshgrid(xs, xs, indexing="ij")

    eps = 1e-9 * max(1.0, abs(lo), abs(hi))  # lo + i*h lands a rounding error off a face

    def blocked(x, y):
        out = np.zeros(x.shape, bool)
        for x0, x1, y0, y1 in boxes:
            out |= (x > x0 + eps) & (x < x1 - eps) & (y > y0 + eps) & (y < y1 - eps)
        return out

    free = ~blocked(gx, gy)
    idx = np.arange(n * n).reshape(n, n)
    rows, cols, weights = [], [], []
    for di, dj in ((1, 0), (0, 1), (1, 1), (1, -1)):  # each undirected edge once
        src = (slice(0, n - di), slice(max(0, -dj), n - max(0, dj)))
        dst = (slice(di, n), slice(max(0, dj), n - max(0, -dj)))
        mid_ok = ~blocked(0.5 * (gx[src] + gx[dst]), 0.5 * (gy[src] + gy[dst]))
        ok = free[src] & free[dst] & mid_ok
        rows.append(idx[src][ok])
        cols.append(idx[dst][ok])
        weights.append(np.full(ok.sum(), h * np.hypot(di, dj)))
    rows, cols, weights = map(np.concatenate, (rows, cols, weights))
    graph = coo_matrix((weights, (rows, cols)), shape=(n * n, n * n)).tocsr()
    gi = np.clip(np.round((np.asarray(goal) - lo) / h).astype(int), 0, n - 1)
    dist = dijkstra(graph, directed=False, indices=int(idx[gi[0], gi[1]]))
    goal_node = np.array([xs[gi[0]], xs[gi[1]]])
    dist = dist + np.linalg.norm(goal_node - np.asarray(goal))
    return dist.reshape(n, n)


def interpolate(
    field: jax.Array, lo: float, h: float, p: jax.Array, fallback: jax.Array | None = None
) -> jax.Array:
    """Bilinear interpolation over the finite (free) corners of the grid cell holding `p`.

    Where no corner is finite (`p` inside a box), the same over `fallback` (`fill_blocked`);
    without one such points read +inf, never a silent 0.
    """

    def over_finite(f):
        n = f.shape[0]
        u = jnp.clip((p - lo) / h, 0.0, n - 1.000001)
        i0 = jnp.floor(u).astype(jnp.int32)
        frac = u - i0
        total, weight = 0.0, 0.0
        for di in (0, 1):
            for dj in (0, 1):
                w = (frac[..., 0] if di else 1 - frac[..., 0]) * (
                    frac[..., 1] if dj else 1 - frac[..., 1]
                )
                v = f[i0[..., 0] + di, i0[..., 1] + dj]
                ok = jnp.isfinite(v)
                total = total + jnp.where(ok, w * v, 0.0)
                weight = weight + jnp.where(ok, w, 0.0)
        return total / jnp.maximum(weight, 1e-12), weight > 0

    value, found = over_finite(field)
    other = over_finite(fallback)[0] if fallback is not None else jnp.inf
    return jnp.where(found, value, other)


# -- The environment -----------------------------------------------------------------------


class PointMaze(Task):
    """A point mass in a walled 2D maze. Observation: xy. No termination; horizon from layout."""

    classifier_obs = None  # the classifier sees xy, the whole observation

    def __init__(self, layout: MazeLayout, reward: str = "sparse"):
        if reward not in ("sparse", "dense"):
            raise ValueError(f"reward={reward!r} is not one of 'sparse', 'dense'")
        self.layout = layout
        self.reward_type = reward
        self.episode_length = layout.episode_length
        self._boxes = jnp.asarray(layout.collision_boxes(), jnp.float32)
        self._start = jnp.asarray(layout.start, jnp.float32)
        self._goal = jnp.asarray(layout.goal, jnp.float32)

    @cached_property
    def _field(self) -> tuple[jax.Array, jax.Array]:
        """(shortest-path field, its fill_blocked fallback for in-wall lookups)."""
        with jax.ensure_compile_time_eval():
            return tuple(jnp.asarray(f, jnp.float32) for f in geodesic_field(self.layout))

    @cached_property
    def _start_distance(self) -> float:
        with jax.ensure_compile_time_eval():
            return float(self.geodesic_distance(self._start))

    @property
    def observation_size(self) -> int:
        return 2

    @property
    def action_size(self) -> int:
        return 2

    @property
    def goal(self) -> jax.Array:
        return self._goal

    def move(self, pos: jax.Array, action: jax.Array) -> jax.Array:
        """One step of the dynamics: scaled, clipped displacement, then wall collisions."""
        delta = jnp.clip(action, -1.0, 1.0) * self.layout.action_scale
        return move(pos, delta, self._boxes)

    def _reset_position(self, rng: jax.Array) -> jax.Array:
        noise = self.layout.reset_noise
        pos = self._start + jax.random.uniform(rng, (2,), minval=-noise, maxval=noise)
        # Noise never puts the point inside a wall: push it from the start position.
        return move(self._start, pos - self._start, self._boxes)

    def reset(self, rng: jax.Array) -> State:
        obs = self._reset_position(rng)
        zero = jnp.zeros((), jnp.float32)
        return State(pipeline_state=None, obs=obs, reward=zero, done=zero, metrics={}, info={})

    def step(self, state: State, action: jax.Array) -> State:
        obs = self.move(state.obs, action)
        if self.reward_type == "dense":
            reward = self.dense_reward(state.obs, obs)
        else:
            reward = self.sparse_reward(state.obs, obs)
        return state.replace(obs=obs, reward=reward, done=jnp.zeros((), jnp.float32))

    # -- Task API --

    def goal_distance(self, obs: jax.Array) -> jax.Array:
        return jnp.linalg.norm(obs[..., :2] - self._goal, axis=-1)

    def is_success(self, obs: jax.Array) -> jax.Array:
        return self.goal_distance(obs) < self.layout.success_radius

    def geodesic_distance(self, obs: jax.Array) -> jax.Array:
        """Shortest-path distance to the goal around the walls."""
        field, fallback = self._field
        return interpolate(field, self.layout.bounds[0], self.layout.grid_spacing, obs, fallback)

    def dense_reward(self, obs: jax.Array, next_obs: jax.Array) -> jax.Array:
        """Negative shortest-path distance of the next state, in units of the start's distance."""
        del obs
        return -self.geodesic_distance(next_obs) / self._start_distance

    def success_examples(self, rng: jax.Array, n: int, random_steps: int = 10) -> jax.Array:
        """As in the paper: reset near the goal, take random steps, keep states near the goal.

        Each of `n` walkers starts uniformly within the tolerance of the goal and takes
        `random_steps` uniformly random actions; `n` states within the tolerance are drawn from
        everything visited (the starts guarantee there are enough).
        """
        tol = self.layout.success_example_tolerance
        k_start, k_act, k_pick = jax.random.split(rng, 3)
        radius = tol * jnp.sqrt(jax.random.uniform(k_start, (n,)))
        angle = jax.random.uniform(jax.random.fold_in(k_start, 1), (n,), maxval=2 * jnp.pi)
        offset = radius[:, None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], -1)
        starts = jax.vmap(lambda d: move(self._goal, d, self._boxes))(offset)
        actions = jax.random.uniform(k_act, (random_steps, n, 2), minval=-1.0, maxval=1.0)

        def walk(pos, a):
            nxt = jax.vmap(self.move)(pos, a)
            return nxt, nxt

        _, visited = jax.lax.scan(walk, starts, actions)
        pool = jnp.concatenate([starts[None], visited], axis=0).reshape(-1, 2)
        near = self.goal_distance(pool) <= tol
        priority = jnp.where(near, jax.random.uniform(k_pick, near.shape), -1.0)
        _, chosen = jax.lax.top_k(priority, n)
        return pool[chosen]


# -- The paper's layouts -------------------------------------------------------------------

ZIGZAG = MazeLayout(
    walls=((-4 / 3, -4.0, -4 / 3, 1.0), (4 / 3, -1.0, 4 / 3, 4.0)),
    start=(-3.0, -3.0),
    goal=(3.0, 3.0),
)

_SPIRAL_WALLS = (
    (-4.0, -3.0, 1.0, -3.0),
    (1.0, -3.0, 1.0, 3.0),
    (-3.0, 3.0, 1.0, 3.0),
    (-3.0, -2.0, -3.0, 3.0),
    (-3.0, -2.0, 0.0, -2.0),
)
# The original starts at (-3, -3), inside the inflated first wall (y = -3 +- 0.15), where its
# collision rule lets the point leave on either side. `spiral_maze` starts in the bottom
# corridor at (-3, -3.5), so the task is the full spiral (about 27 units to the goal).
SPIRAL = MazeLayout(walls=_SPIRAL_WALLS, start=(-3.0, -3.5), goal=(-0.5, 1.25))
# `spiral_maze_original` keeps the original's start and rule: one step up leaves the wall into
# the inner corridor, from which the goal is about 7 units away; the outer spiral is a detour.
SPIRAL_ORIGINAL = MazeLayout(
    walls=_SPIRAL_WALLS, start=(-3.0, -3.0), goal=(-0.5, 1.25), start_in_wall=True
)
