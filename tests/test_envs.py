"""Point-maze tasks: registry, swept wall collisions, success test, oracle, Brax API, layouts."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.envs.base import State

from mural_jax.envs import MazeLayout, PointMaze, list_envs, make_env
from mural_jax.envs.point_maze import SPIRAL, ZIGZAG, inside_any

NAMES = ("zigzag_maze", "spiral_maze")
TOL = 1e-5  # how far "strictly inside" a box a point must be to count as a violation


# -- Helpers (numpy, float64) ----------------------------------------------------------------


_ENVS: dict[str, PointMaze] = {}


def get_env(name: str) -> PointMaze:
    """One shared instance per task, so that its jitted functions compile once."""
    if name not in _ENVS:
        _ENVS[name] = make_env(name)
    return _ENVS[name]


@pytest.fixture(params=NAMES)
def env(request) -> PointMaze:
    return get_env(request.param)


@pytest.fixture
def zigzag() -> PointMaze:
    return get_env("zigzag_maze")


@pytest.fixture
def spiral() -> PointMaze:
    return get_env("spiral_maze")


class Jitted:
    """An env's functions, jitted once per env (eager dispatch of many small ops is slow)."""

    def __init__(self, env: PointMaze):
        self.move = jax.jit(jax.vmap(env.move))
        self.geo = jax.jit(env.geodesic_distance)
        self.dense = jax.jit(env.dense_reward)
        self.success = jax.jit(env.is_success)
        self.dist = jax.jit(env.goal_distance)
        self.reset = jax.jit(jax.vmap(env.reset))
        self.step = jax.jit(env.step)


_JITTED: dict[int, Jitted] = {}


def jitted(env: PointMaze) -> Jitted:
    if id(env) not in _JITTED:
        _JITTED[id(env)] = Jitted(env)
    return _JITTED[id(env)]


def batched_move(env: PointMaze, pos, act) -> np.ndarray:
    """`env.move` vmapped and jitted (one compile per env and batch shape)."""
    out = jitted(env).move(jnp.asarray(pos, jnp.float32), jnp.asarray(act, jnp.float32))
    return np.asarray(out, np.float64)


def f32(x: float) -> float:
    """A coordinate as the float32 value the env stores (faces are compared exactly)."""
    return float(np.float32(x))


def strictly_inside(p: np.ndarray, boxes: np.ndarray, tol: float = TOL) -> np.ndarray:
    """(N,) whether each point of p (N, 2) lies deeper than `tol` inside any box."""
    x, y = p[:, None, 0], p[:, None, 1]
    b = boxes[None]
    inside = (x > b[..., 0] + tol) & (x < b[..., 1] - tol)
    inside &= (y > b[..., 2] + tol) & (y < b[..., 3] - tol)
    return inside.any(axis=1)


def _cross(ox, oy, ax, ay, bx, by):
    return (ax - ox) * (by - oy) - (ay - oy) * (bx - ox)


def crosses_thin_wall(p: np.ndarray, q: np.ndarray, walls) -> np.ndarray:
    """(N,) whether segment p->q intersects (or touches) any thin wall segment (exact test)."""
    out = np.zeros(len(p), bool)
    px, py, qx, qy = p[:, 0], p[:, 1], q[:, 0], q[:, 1]
    for x0, y0, x1, y1 in walls:
        d1 = _cross(x0, y0, x1, y1, px, py)
        d2 = _cross(x0, y0, x1, y1, qx, qy)
        d3 = _cross(px, py, qx, qy, x0, y0)
        d4 = _cross(px, py, qx, qy, x1, y1)
        proper = (d1 * d2 < 0) & (d3 * d4 < 0)
        # Collinear / touching cases: an endpoint of one segment on the other.
        on_wall_p = (d1 == 0) & _within(px, py, x0, y0, x1, y1)
        on_wall_q = (d2 == 0) & _within(qx, qy, x0, y0, x1, y1)
        w0_on_seg = (d3 == 0) & _within(x0, y0, px, py, qx, qy)
        w1_on_seg = (d4 == 0) & _within(x1, y1, px, py, qx, qy)
        out |= proper | on_wall_p | on_wall_q | w0_on_seg | w1_on_seg
    return out


def _within(x, y, ax, ay, bx, by):
    return (
        (np.minimum(ax, bx) <= x)
        & (x <= np.maximum(ax, bx))
        & (np.minimum(ay, by) <= y)
        & (y <= np.maximum(ay, by))
    )


def segment_enters_box(p: np.ndarray, q: np.ndarray, boxes: np.ndarray, n: int = 33):
    """(N,) whether any of n points sampled along p->q lies strictly inside an inflated box."""
    ts = np.linspace(0.0, 1.0, n)
    bad = np.zeros(len(p), bool)
    for t in ts:
        bad |= strictly_inside(p + t * (q - p), boxes)
    return bad


def assert_valid_steps(env: PointMaze, p: np.ndarray, q: np.ndarray) -> None:
    """Every step p[i] -> q[i] ends outside the walls, in bounds, and crosses no thin wall."""
    lay = env.layout
    boxes = lay.boxes()
    lo, hi = lay.bounds
    inside = strictly_inside(q, boxes)
    assert not inside.any(), f"ended inside a wall: {p[inside][:5]} -> {q[inside][:5]}"
    assert np.all(q >= lo) and np.all(q <= hi), "left the arena"
    crossed = crosses_thin_wall(p, q, lay.walls)
    assert not crossed.any(), f"crossed a wall: {p[crossed][:5]} -> {q[crossed][:5]}"
    entered = segment_enters_box(p, q, boxes)
    assert not entered.any(), f"passed through a wall box: {p[entered][:5]} -> {q[entered][:5]}"
    step = np.abs(q - p)
    assert np.all(step <= lay.action_scale + 1e-5), "moved further than one step"


def free_positions(layout: MazeLayout, rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform positions in the arena, rejecting those strictly inside an inflated wall."""
    lo, hi = layout.bounds
    out = np.empty((0, 2))
    while len(out) < n:
        p = rng.uniform(lo, hi, size=(2 * n, 2))
        out = np.concatenate([out, p[~strictly_inside(p, layout.boxes(), tol=0.0)]])
    return out[:n]


def face_positions(layout: MazeLayout, rng: np.random.Generator, n_per_face: int) -> np.ndarray:
    """Points exactly on the faces and corners of every inflated box (float32 values)."""
    pts = []
    lo, hi = layout.bounds
    for x0, x1, y0, y1 in layout.boxes():
        ys = np.concatenate([[y0, y1], rng.uniform(y0, y1, n_per_face)])
        xs = np.concatenate([[x0, x1], rng.uniform(x0, x1, n_per_face)])
        pts += [np.stack([np.full_like(ys, x), ys], -1) for x in (x0, x1)]
        pts += [np.stack([xs, np.full_like(xs, y)], -1) for y in (y0, y1)]
    p = np.concatenate(pts).astype(np.float32).astype(np.float64)
    p = p[np.all((p >= lo) & (p <= hi), axis=1)]
    return p[~strictly_inside(p, layout.boxes())]


def random_actions(rng: np.random.Generator, n: int) -> np.ndarray:
    """A mix of over-long actions (clipped), exact +-1 diagonals and exact axis moves."""
    kind = rng.integers(0, 3, n)
    over = rng.uniform(-2.5, 2.5, (n, 2))
    diag = rng.choice([-1.0, 1.0], (n, 2))
    axis = np.zeros((n, 2))
    axis[np.arange(n), rng.integers(0, 2, n)] = rng.choice([-1.0, 1.0], n)
    return np.where(kind[:, None] == 0, over, np.where(kind[:, None] == 1, diag, axis))


# -- Registry --------------------------------------------------------------------------------


def test_registry_builds_both_mazes():
    assert set(NAMES) <= set(list_envs())
    for name in NAMES:
        e = make_env(name)
        assert isinstance(e, PointMaze)
    assert make_env("zigzag_maze").layout == ZIGZAG
    assert make_env("spiral_maze").layout == SPIRAL
    assert make_env("spiral_maze", reward="dense").reward_type == "dense"


def test_registry_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        make_env("no_such_maze")
    msg = str(info.value)
    assert "no_such_maze" in msg
    for name in NAMES:
        assert name in msg


# -- Walls block motion ----------------------------------------------------------------------


def test_random_single_steps_never_cross_walls(env):
    rng = np.random.default_rng(0)
    lay = env.layout
    starts = np.concatenate([free_positions(lay, rng, 4000), face_positions(lay, rng, 40)])
    # Arena corners and edges too.
    lo, hi = lay.bounds
    corners = np.array([[lo, lo], [lo, hi], [hi, lo], [hi, hi], [lo, 0.0], [hi, 0.5]])
    starts = np.concatenate([starts, corners])
    n = len(starts)
    acts = random_actions(rng, n)
    ends = batched_move(env, starts, acts)
    assert ends.shape == (n, 2)
    assert_valid_steps(env, starts, ends)
    # Without any wall in the way the full (clipped) step is taken: most steps are unblocked.
    full = np.clip(acts, -1, 1) * lay.action_scale
    unblocked = np.all(np.abs(ends - (starts + full)) < 1e-5, axis=1)
    assert unblocked.mean() > 0.5


def test_long_actions_are_clipped(zigzag):
    start = np.array([[-3.0, -3.0]] * 4)
    acts = np.array([[5.0, 0.0], [0.0, -0.0], [1.0, 1.0], [-100.0, 100.0]])
    ends = batched_move(zigzag, start, acts)
    np.testing.assert_allclose(ends[0], [-2.5, -3.0], atol=1e-6)
    np.testing.assert_allclose(ends[1], [-3.0, -3.0], atol=1e-6)
    np.testing.assert_allclose(ends[2], [-2.5, -2.5], atol=1e-6)
    np.testing.assert_allclose(ends[3], [-3.5, -2.5], atol=1e-6)


# Zigzag first wall x = -4/3, y in [-4, 1]; inflated: x in [-4/3 - .15, -4/3 + .15], y <= 1.15.
ZX_LEFT = f32(-4 / 3 - 0.15)
ZX_RIGHT = f32(-4 / 3 + 0.15)
Z_TOP = f32(1.15)


@pytest.mark.parametrize(
    "start, action, expected",
    [
        # Touching the left face, pushing straight in: no motion.
        ((ZX_LEFT, -2.0), (1.0, 0.0), (ZX_LEFT, -2.0)),
        # Pushing diagonally in: slides along the face, only y changes.
        ((ZX_LEFT, -2.0), (1.0, 1.0), (ZX_LEFT, -1.5)),
        ((ZX_LEFT, -2.0), (3.0, -3.0), (ZX_LEFT, -2.5)),
        # Right face, from the middle corridor.
        ((ZX_RIGHT, 0.0), (-1.0, 0.0), (ZX_RIGHT, 0.0)),
        ((ZX_RIGHT, 0.0), (-1.0, -1.0), (ZX_RIGHT, -0.5)),
        # Resting on the wall's top face, pushing down: no motion; diagonally: slides in x.
        (((-4 / 3), Z_TOP), (0.0, -1.0), ((-4 / 3), Z_TOP)),
        (((-4 / 3), Z_TOP), (1.0, -1.0), ((-4 / 3) + 0.5, Z_TOP)),
        # Arena corners, pushing outwards.
        ((-4.0, -4.0), (-1.0, -1.0), (-4.0, -4.0)),
        ((4.0, 4.0), (1.0, 1.0), (4.0, 4.0)),
        ((4.0, -4.0), (2.0, -2.0), (4.0, -4.0)),
        # Inner (concave) corner between the first wall and the arena floor.
        ((ZX_LEFT, -4.0), (1.0, -1.0), (ZX_LEFT, -4.0)),
        ((ZX_RIGHT, -4.0), (-1.0, -1.0), (ZX_RIGHT, -4.0)),
        # Full step from just left of the face: stops on the face.
        ((ZX_LEFT - 0.1, -2.0), (1.0, 0.0), (ZX_LEFT, -2.0)),
        # Full diagonal step from next to the face: hits it after 0.1 and slides the rest in y.
        ((ZX_LEFT - 0.1, -2.0), (1.0, 1.0), (ZX_LEFT, -1.5)),
        # Approaching the wall tip's convex corner (ZX_RIGHT, Z_TOP) from the lower right:
        # meets the right face at y = 0.9 + 0.2 < 1.15, then slides up past the corner.
        ((ZX_RIGHT + 0.2, 0.9), (-1.0, 1.0), (ZX_RIGHT, 1.4)),
        # From the upper right the corner is missed: full step.
        ((ZX_RIGHT + 0.2, 1.0), (-1.0, 1.0), (ZX_RIGHT - 0.3, 1.5)),
    ],
)
def test_wall_corner_cases(zigzag, start, action, expected):
    p = np.array([start], np.float32).astype(np.float64)
    q = batched_move(zigzag, p, np.array([action]))
    np.testing.assert_allclose(q[0], expected, atol=2e-6)
    assert_valid_steps(zigzag, p, q)


def test_diagonal_step_exactly_through_convex_corner(zigzag):
    # The straight path passes exactly through the box corner: whatever the tie-break, the point
    # must not enter the box or cross the wall, and must end on or beyond the corner.
    p = np.array([[ZX_RIGHT + 0.25, Z_TOP - 0.25], [ZX_LEFT - 0.25, Z_TOP - 0.25]])
    a = np.array([[-1.0, 1.0], [1.0, 1.0]])
    q = batched_move(zigzag, p.astype(np.float32).astype(np.float64), a)
    assert_valid_steps(zigzag, p, q)
    assert np.all(q[:, 1] >= Z_TOP - 1e-5)


def test_corner_pushes_in_every_direction_stay_outside(env):
    # Every box corner and every arena corner, pushed in all 8 full-length directions.
    lay = env.layout
    corners = [(x, y) for x0, x1, y0, y1 in lay.boxes() for x in (x0, x1) for y in (y0, y1)]
    lo, hi = lay.bounds
    corners += [(lo, lo), (lo, hi), (hi, lo), (hi, hi)]
    dirs = [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if (dx, dy) != (0, 0)]
    p = np.array([c for c in corners for _ in dirs], np.float32).astype(np.float64)
    a = np.array([d for _ in corners for d in dirs], np.float64)
    keep = np.all((p >= lo) & (p <= hi), axis=1)
    # A nudge of 0.01 towards each direction's source: starts right next to the corner too.
    p2 = p - 0.01 * a
    keep2 = keep & ~strictly_inside(p2, lay.boxes(), tol=0.0) & np.all((p2 >= lo) & (p2 <= hi), 1)
    starts = np.concatenate([p[keep], p2[keep2]])
    acts = np.concatenate([a[keep], a[keep2]])
    ends = batched_move(env, starts, acts)
    assert_valid_steps(env, starts, ends)


def test_spiral_junction_inner_corner_holds(spiral):
    # Inner corner between the bottom wall (y = -3) and the right wall (x = 1) of the spiral.
    x, y = f32(1.0 - 0.15), f32(-3.0 + 0.15)
    p = np.array([[x, y]] * 3)
    q = batched_move(spiral, p, np.array([[1.0, -1.0], [1.0, 0.0], [1.0, 1.0]]))
    np.testing.assert_allclose(q[0], [x, y], atol=1e-6)
    np.testing.assert_allclose(q[1], [x, y], atol=1e-6)
    np.testing.assert_allclose(q[2], [x, y + 0.5], atol=1e-6)
    assert_valid_steps(spiral, p, q)


def test_multi_step_rollouts_never_cross_walls(env):
    n, steps = 256, 200
    key = jax.random.PRNGKey(1)
    starts = free_positions(env.layout, np.random.default_rng(1), n)

    @jax.jit
    def rollout(obs0, key):
        state = jax.vmap(env.reset)(jax.random.split(key, n)).replace(obs=obs0)
        acts = jax.random.uniform(key, (steps, n, 2), minval=-1.5, maxval=1.5)
        # Half of the steps are exact unit diagonals (the longest moves).
        diag = jnp.sign(acts)
        acts = jnp.where(jnp.arange(steps)[:, None, None] % 2 == 0, acts, diag)

        def body(s, a):
            s = jax.vmap(env.step)(s, a)
            return s, (s.obs, s.reward, s.done)

        _, out = jax.lax.scan(body, state, acts)
        return out

    obs, reward, done = jax.tree.map(np.asarray, rollout(jnp.asarray(starts, jnp.float32), key))
    assert obs.shape == (steps, n, 2)
    traj = np.concatenate([starts[None], obs.astype(np.float64)], axis=0)
    p = traj[:-1].reshape(-1, 2)
    q = traj[1:].reshape(-1, 2)
    assert_valid_steps(env, p, q)
    assert np.all(np.isfinite(reward)) and np.all(done == 0)
    # The walkers do move around (collisions do not freeze them).
    assert np.mean(np.linalg.norm(q - p, axis=1) > 0.1) > 0.5


# -- Success ---------------------------------------------------------------------------------


def test_success_detection_and_goal_distance(env):
    fns = jitted(env)
    goal = np.asarray(env.layout.goal, np.float64)
    angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    unit = np.stack([np.cos(angles), np.sin(angles)], -1)
    assert bool(fns.success(jnp.asarray(goal, jnp.float32)))
    radii = np.array([0.0, 0.2, 0.49, 0.51, 2.0])
    pts = jnp.asarray(goal + radii[:, None, None] * unit, jnp.float32)  # (5, 8, 2)
    got = np.asarray(fns.success(pts))
    assert got.shape == (5, 8)
    np.testing.assert_array_equal(got, np.repeat((radii < 0.5)[:, None], 8, axis=1))
    np.testing.assert_allclose(
        np.asarray(fns.dist(pts)), np.repeat(radii[:, None], 8, 1), atol=1e-5
    )
    # Batched shapes and exact values.
    pts = jnp.asarray(np.stack([goal + [3.0, 4.0], goal + [-6.0, 8.0]])[None], jnp.float32)
    np.testing.assert_allclose(np.asarray(fns.dist(pts)), [[5.0, 10.0]], rtol=1e-6)
    assert fns.success(pts).shape == (1, 2)
    # The sparse reward is the success test of the next state.
    obs = jnp.zeros(2)
    assert float(env.sparse_reward(obs, jnp.asarray(goal, jnp.float32))) == 1.0
    assert float(env.sparse_reward(obs, jnp.asarray(goal + 0.6, jnp.float32))) == 0.0


def test_goal_distance_zigzag_value(zigzag):
    d = zigzag.goal_distance(jnp.array([[0.0, -1.0], [3.0, 3.0], [-3.0, -3.0]]))
    np.testing.assert_allclose(np.asarray(d), [5.0, 0.0, 6 * np.sqrt(2)], rtol=1e-6)


def test_success_examples(env):
    fn = jax.jit(env.success_examples, static_argnums=1)
    ex = np.asarray(fn(jax.random.PRNGKey(0), 150))
    assert ex.shape == (150, 2)
    d = np.linalg.norm(ex - np.asarray(env.layout.goal), axis=1)
    assert np.all(d <= env.layout.success_example_tolerance + 1e-6)
    assert np.all(np.asarray(jitted(env).success(jnp.asarray(ex))))
    assert len(np.unique(ex, axis=0)) > 100  # not all identical
    assert np.std(ex[:, 0]) > 0.005 and np.std(ex[:, 1]) > 0.005
    np.testing.assert_array_equal(ex, np.asarray(fn(jax.random.PRNGKey(0), 150)))
    assert not np.allclose(ex, np.asarray(fn(jax.random.PRNGKey(1), 150)))
    assert not strictly_inside(ex, env.layout.boxes()).any()


# -- Reset distribution ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, start", [("zigzag_maze", (-3.0, -3.0)), ("spiral_maze", (-3.0, -3.5))]
)
def test_default_reset_is_the_start(name, start):
    env = get_env(name)
    keys = jax.random.split(jax.random.PRNGKey(0), 16)
    obs = np.asarray(jitted(env).reset(keys).obs)
    assert obs.shape == (16, 2)
    np.testing.assert_array_equal(obs, np.tile(np.asarray(start, np.float32), (16, 1)))


def test_noisy_reset():
    layout = ZIGZAG
    noisy = dataclasses.replace(layout, reset_noise=0.3)
    env = PointMaze(noisy)
    keys = jax.random.split(jax.random.PRNGKey(0), 1000)
    obs = np.asarray(jax.jit(jax.vmap(env.reset))(keys).obs, np.float64)
    off = obs - np.asarray(layout.start)
    assert np.all(np.abs(off) <= 0.3 + 1e-6)
    assert len(np.unique(obs, axis=0)) > 900
    assert np.abs(off).max() > 0.25  # actually spread over the noise range
    assert abs(off.mean()) < 0.05  # and centred on the start
    assert not strictly_inside(obs, noisy.boxes()).any()
    lo, hi = noisy.bounds
    assert np.all((obs >= lo) & (obs <= hi))


def test_noisy_reset_next_to_a_wall_is_pushed_not_inside():
    # A start touching the first zigzag wall's face: half the noise points into the wall.
    layout = dataclasses.replace(ZIGZAG, start=(ZX_LEFT, -2.0), reset_noise=0.3)
    env = PointMaze(layout)
    keys = jax.random.split(jax.random.PRNGKey(3), 500)
    obs = np.asarray(jax.jit(jax.vmap(env.reset))(keys).obs, np.float64)
    assert not strictly_inside(obs, layout.boxes()).any()
    assert np.all(obs[:, 0] <= ZX_LEFT + 1e-6)
    assert np.all(np.abs(obs - np.asarray(layout.start)) <= 0.3 + 1e-6)
    assert np.mean(obs[:, 0] == np.float32(ZX_LEFT)) > 0.3  # about half pushed onto the face


# -- Dense (shortest-path) oracle ------------------------------------------------------------

# Checkpoints in order along the shortest path (which hugs the wall tips).
ZIGZAG_PATH = [
    (-3.0, -3.0),
    (-2.6, -1.5),
    (-2.0, 0.0),
    (-1.6, 1.3),
    (-1.0, 1.3),
    (0.0, 0.0),
    (1.0, -1.3),
    (1.6, -1.3),
    (2.2, 0.5),
    (2.8, 2.5),
    (3.0, 3.0),
]
SPIRAL_PATH = [
    (-3.0, -3.5),
    (0.0, -3.5),
    (2.0, -3.5),
    (2.0, 0.0),
    (2.0, 3.5),
    (0.0, 3.5),
    (-3.5, 3.5),
    (-3.5, 0.0),
    (-3.5, -2.5),
    (-1.0, -2.5),
    (0.5, -2.5),
    (0.5, -1.0),
    (-0.5, 0.5),
    (-0.5, 1.25),
]


def test_geodesic_zero_at_goal_and_at_least_euclidean(env):
    lay = env.layout
    geo = jitted(env).geo
    assert abs(float(geo(jnp.asarray(lay.goal, jnp.float32)))) < 1e-4
    xs = np.linspace(-4.0, 4.0, 81)
    gx, gy = np.meshgrid(xs, xs, indexing="ij")
    pts = np.stack([gx.ravel(), gy.ravel()], -1)
    pts = pts[~strictly_inside(pts, lay.boxes(), tol=0.0)]
    g = np.asarray(geo(jnp.asarray(pts, jnp.float32)), np.float64)
    e = np.linalg.norm(pts - np.asarray(lay.goal), axis=1)
    assert np.all(np.isfinite(g))
    assert np.all(g >= e - 0.05), pts[np.argmin(g - e)]
    # The grid path is at most ~8% (8-connected) plus a cell longer than a straight line where
    # the goal is in view; and somewhere the walls force a long detour.
    assert np.max(g / np.maximum(e, 1e-3)) > 3.0


@pytest.mark.parametrize("name", [*NAMES, "spiral_maze_original"])
def test_geodesic_on_wall_faces_is_no_shortcut(name):
    """Where the point rests against a wall, the oracle reads a true distance, never the goal's
    nor the wall's far side's.

    The point stops exactly on a box face, which can fall a rounding error inside the grid's
    box (a face node counted as blocked) or between nodes inside it; a lookup over no free node
    once read 0 there, and the dense oracle's agents parked on those faces.
    """
    env = get_env(name) if name in NAMES else make_env(name)
    lay, j = env.layout, jitted(env)
    rng = np.random.default_rng(0)
    pts, pushes = [], []
    for x0, x1, y0, y1 in lay.boxes():
        t = rng.uniform(0.0, 1.0, 64)
        # Just outside each face, pushed into the box: the move stops exactly on the face.
        for p, push in (
            (np.stack([np.full(64, x0 - 0.05), y0 + (y1 - y0) * t], -1), (1.0, 0.0)),
            (np.stack([np.full(64, x1 + 0.05), y0 + (y1 - y0) * t], -1), (-1.0, 0.0)),
            (np.stack([x0 + (x1 - x0) * t, np.full(64, y0 - 0.05)], -1), (0.0, 1.0)),
            (np.stack([x0 + (x1 - x0) * t, np.full(64, y1 + 0.05)], -1), (0.0, -1.0)),
        ):
            pts.append(p)
            pushes.append(np.broadcast_to(np.asarray(push), p.shape))
    pts, pushes = np.concatenate(pts), np.concatenate(pushes)
    lo, hi = lay.bounds
    keep = np.all((pts > lo) & (pts < hi), 1) & ~strictly_inside(pts, lay.boxes(), tol=0.0)
    off_face = jnp.asarray(pts[keep], jnp.float32)
    on_face = np.asarray(j.move(off_face, jnp.asarray(pushes[keep])))
    assert strictly_inside(on_face, lay.boxes(), tol=1e-4).sum() == 0
    g = np.asarray(j.geo(jnp.asarray(on_face)), np.float64)
    e = np.linalg.norm(on_face - np.asarray(lay.goal), axis=1)
    assert np.all(g >= e - 0.05), (on_face[np.argmin(g - e)], np.min(g - e))
    # 0.05 from the face on the free side, the distance differs by about 0.05 at most.
    gap = np.abs(g - np.asarray(j.geo(off_face), np.float64))
    assert np.all(gap <= 0.1), (on_face[np.argmax(gap)], np.max(gap))


@pytest.mark.parametrize("name, path", [("zigzag_maze", ZIGZAG_PATH), ("spiral_maze", SPIRAL_PATH)])
def test_geodesic_decreases_along_the_solution_path(name, path):
    env = get_env(name)
    g = np.asarray(jitted(env).geo(jnp.asarray(path, jnp.float32)))
    assert np.all(np.diff(g) < 0), g
    # Each leg is at least as long as the straight line between the checkpoints (and close).
    legs = np.linalg.norm(np.diff(np.asarray(path), axis=0), axis=1)
    assert np.all(-np.diff(g) <= legs * 1.1 + 0.1)
    assert g[-1] < 1e-4


def test_geodesic_zigzag_is_shortest_path_shaped(zigzag):
    g = lambda p: float(jitted(zigzag).geo(jnp.asarray(p, jnp.float32)))
    e = lambda p: float(np.linalg.norm(np.asarray(p) - [3.0, 3.0]))
    # Both left of the first wall: the bottom point must first climb the corridor.
    assert g((-2.0, -3.0)) > g((-2.0, 2.0)) + 3.0
    # Just left of the second wall near the goal: must go down and under it (~ 3 + 2*4.15).
    assert g((0.0, 3.0)) > e((0.0, 3.0)) + 5.0
    # Exact shortest paths (taut strings around the wall boxes' corners); the 8-connected grid
    # overestimates by at most ~8%.
    tip1 = np.array([-4 / 3 + 0.15, 1.15]), np.array([-4 / 3 - 0.15, 1.15])
    tip2 = np.array([4 / 3 - 0.15, -1.15]), np.array([4 / 3 + 0.15, -1.15])
    goal = np.array([3.0, 3.0])
    tail = 0.3 + np.linalg.norm(goal - tip2[1])  # around the second tip, then up to the goal
    from_mid = lambda p: np.linalg.norm(tip2[0] - p) + tail
    exact_start = np.linalg.norm(tip1[1] - [-3, -3]) + 0.3 + from_mid(tip1[0])
    for p, exact in (((0.0, 3.0), from_mid(np.array([0.0, 3.0]))), ((-3.0, -3.0), exact_start)):
        assert exact <= g(p) <= 1.085 * exact, (p, g(p), exact)
    # With the goal in view, close to the straight-line distance.
    np.testing.assert_allclose(g((3.0, -1.0)), 4.0, rtol=0.03)


def test_dense_reward(env):
    lay = env.layout
    start = jnp.asarray(lay.start, jnp.float32)
    goal = jnp.asarray(lay.goal, jnp.float32)
    fns = jitted(env)
    pair = jnp.stack([start, start])
    r0 = np.asarray(fns.dense(pair, jnp.stack([start, goal])))
    np.testing.assert_allclose(r0, [-1.0, 0.0], atol=1e-5)
    path = jnp.asarray(ZIGZAG_PATH if lay == ZIGZAG else SPIRAL_PATH, jnp.float32)
    r = np.asarray(fns.dense(path[:-1], path[1:]))
    assert np.all(np.diff(r) > 0) and np.all(r <= 0) and np.all(r > -1)
    g = np.asarray(fns.geo(path))
    np.testing.assert_allclose(r, -g[1:] / g[0], rtol=1e-5)


# -- Brax API --------------------------------------------------------------------------------


def test_brax_api(env):
    assert env.observation_size == 2 and env.action_size == 2
    assert env.episode_length == 100
    batched = jitted(env).reset(jax.random.split(jax.random.PRNGKey(0), 16))
    assert isinstance(batched, State)
    state = jax.tree.map(lambda x: x[0], batched)
    assert state.obs.shape == (2,)
    assert float(state.done) == 0.0 and float(state.reward) == 0.0
    step = jitted(env).step
    nxt = step(state, jnp.array([1.0, 0.0]))
    assert nxt.obs.shape == (2,)
    assert np.isfinite(float(nxt.reward)) and float(nxt.done) == 0.0
    np.testing.assert_allclose(np.asarray(nxt.obs), np.asarray(state.obs) + [0.5, 0.0], atol=1e-6)
    assert float(nxt.reward) == 0.0  # sparse: not at the goal
    # Stepping onto the goal from next to it gives the sparse reward 1.
    near = state.replace(obs=jnp.asarray(env.layout.goal, jnp.float32) - jnp.array([0.3, 0.0]))
    assert float(step(near, jnp.array([0.6, 0.0])).reward) == 1.0


def test_brax_dense_reward_in_state():
    sparse = get_env("spiral_maze")
    dense = make_env("spiral_maze", reward="dense")
    states = jitted(sparse).reset(jax.random.split(jax.random.PRNGKey(0), 16))
    acts = jnp.tile(jnp.array([[1.0, 1.0], [-1.0, 0.0]]), (8, 1))
    nxt = jax.jit(jax.vmap(dense.step))(states, acts)
    expected = jitted(sparse).dense(states.obs, nxt.obs)
    np.testing.assert_allclose(np.asarray(nxt.reward), np.asarray(expected), rtol=1e-6)
    r = np.asarray(nxt.reward).reshape(8, 2)
    # Right along the bottom corridor is progress; left (towards the dead end) is not.
    assert np.all((-1.0 < r[:, 0]) & (r[:, 0] < 0.0)) and np.all(r[:, 1] < -1.0)
    np.testing.assert_array_equal(np.asarray(nxt.done), 0.0)


def test_bad_reward_name():
    with pytest.raises(ValueError, match="shaped"):
        PointMaze(ZIGZAG, reward="shaped")
    with pytest.raises(ValueError, match="bogus"):
        make_env("spiral_maze", reward="bogus")


# -- MazeLayout validation -------------------------------------------------------------------


def test_layout_rejects_diagonal_wall():
    with pytest.raises(ValueError) as info:
        MazeLayout(walls=((0.0, 0.0, 1.0, 1.0),), start=(-3.0, -3.0), goal=(3.0, 3.0))
    assert "(0.0, 0.0, 1.0, 1.0)" in str(info.value)


def test_layout_rejects_start_inside_wall():
    with pytest.raises(ValueError) as info:
        dataclasses.replace(ZIGZAG, start=(-4 / 3 + 0.1, 0.0))
    msg = str(info.value)
    assert "start" in msg and str((-4 / 3 + 0.1, 0.0)) in msg and "start_in_wall" in msg


def test_original_spiral_start_leaves_its_wall_on_either_side_and_never_reenters():
    """The original's start lies inside the first wall's box; its rule (and ours) blocks only
    entry into a box, so one step up reaches the inner corridor and the goal is ~9 units away."""
    orig = PointMaze(make_env("spiral_maze_original").layout, reward="dense")
    start = jnp.asarray(orig.layout.start)
    assert inside_any(np.asarray(start, np.float64), orig.layout.boxes())
    up = orig.move(start, jnp.array([0.0, 1.0]))
    down = orig.move(start, jnp.array([0.0, -1.0]))
    np.testing.assert_allclose(up, [-3.0, -2.5], atol=1e-6)
    np.testing.assert_allclose(down, [-3.0, -3.5], atol=1e-6)
    # From outside, the box blocks again: back down stops at its top face, back up at its bottom.
    np.testing.assert_allclose(orig.move(up, jnp.array([0.0, -1.0])), [-3.0, -2.85], atol=1e-6)
    np.testing.assert_allclose(orig.move(down, jnp.array([0.0, 1.0])), [-3.0, -3.15], atol=1e-6)
    # The oracle knows the short way: the start is ~7 units from the goal, not the full
    # spiral's ~27, and in-wall states get the distance of the nearest way out (finite).
    assert 6.5 < orig._start_distance < 8.0
    assert make_env("spiral_maze", reward="dense")._start_distance > 25.0
    near_start = orig.geodesic_distance(jnp.array([-2.0, -3.02]))
    assert np.isfinite(float(near_start)) and float(near_start) < 8.0


def test_layout_rejects_goal_outside_bounds():
    with pytest.raises(ValueError) as info:
        dataclasses.replace(ZIGZAG, goal=(5.0, 0.0))
    msg = str(info.value)
    assert "goal" in msg and "(5.0, 0.0)" in msg


def test_layout_accepts_start_on_a_face_and_rejects_bad_bounds():
    dataclasses.replace(ZIGZAG, start=(-4 / 3 - 0.15, 0.0))  # touching is allowed
    with pytest.raises(ValueError, match=r"\(4.0, -4.0\)"):
        dataclasses.replace(ZIGZAG, bounds=(4.0, -4.0))
