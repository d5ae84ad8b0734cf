"""Dexterous hand: catch a ball rolling off a Shadow Hand's palm and cradle it at the fingers.

The MURAL paper's in-hand manipulation task was never released, so this is our own task on the
Shadow Hand E3M5 model that ships with mujoco-mjx (`mujoco/mjx/test_data/shadow_hand`,
Apache-2.0), loaded from the installed package at run time and edited with `MjSpec`:

* The hand is fixed at the forearm, palm up; a ball (radius 2.5 cm) is dropped onto the palm.
  The palm's collision boxes do not form a dish: on the open hand the ball rolls over the
  flat fingers and drops onto the floor within about a second, so it must be caught.
* Goal: the ball resting in the cup formed by the palm and the bent fingers, within
  `success_tolerance` (3D) of a fixed `target` near the finger bases. The 3D test also means
  "not dropped": a ball on the floor is at least 10 cm from the target.
* Actions: 24 position servos; `clip(a, -1, 1)` maps *absolutely* onto each actuator's
  ctrlrange (a = 0 is mid-range). Absolute targets keep the state Markov in the observation
  (no hidden accumulated control), as in Gymnasium-Robotics' Shadow Hand tasks by default.
* MJX cost cuts: only ball-hand and ball-floor contacts exist (explicit pairs; no hand
  self-collision), the fingertip meshes are replaced by capsules (sphere-capsule tests are
  closed form), 5 ms timesteps with 8 substeps (one env step = 40 ms), 2 Newton iterations.

Observation (57 floats): ball position [0:3], ball linear velocity [3:6], ball angular
velocity [6:9], hand joint angles [9:33], hand joint velocities [33:57] (actuator order).
The success classifier sees the ball position only.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from brax.envs.base import State
from mujoco import mjx

from mural_jax.envs.base import Task

#: Finger joints bent for the success pose's cup: (proximal J3, middle J2, distal J1).
_CUP_FINGER = (0.3, 0.6, 0.6)
_FINGERS = ("FF", "MF", "RF", "LF")


@dataclasses.dataclass(frozen=True)
class HandConfig:
    """Everything that defines the task; the defaults are the registered `dexterous_hand`."""

    ball_radius: float = 0.025
    #: Ball resting point in the success pose's cup (world frame, metres).
    target: tuple[float, float, float] = (0.352, 0.0, 0.037)
    success_tolerance: float = 0.02
    timestep: float = 0.005
    frame_skip: int = 8
    solver_iterations: int = 2
    ls_iterations: int = 4
    episode_length: int = 50
    #: Reset: ball dropped at this point plus uniform xy noise, hand joints at 0 plus noise.
    ball_start: tuple[float, float, float] = (0.29, 0.0, 0.05)
    ball_start_noise: float = 0.01
    joint_noise: float = 0.05
    #: Success examples: ball at target + noise settles for this many env steps in the cup.
    settle_steps: int = 8
    #: Dense reward: -min(distance, cap) / scale, in [-cap / scale, 0].
    dense_cap: float = 0.15
    dense_scale: float = 0.05


def shadow_hand_dir() -> str:
    """The Shadow Hand model directory inside the installed mujoco-mjx package."""
    return os.path.join(os.path.dirname(mjx.__file__), "test_data", "shadow_hand")


def build_model(cfg: HandConfig) -> mujoco.MjModel:
    """Compile the scene with a sphere ball, a target site and only ball contacts."""
    spec = mujoco.MjSpec.from_file(os.path.join(shadow_hand_dir(), "scene_right.xml"))
    spec.option.timestep = cfg.timestep
    spec.option.iterations = cfg.solver_iterations
    spec.option.ls_iterations = cfg.ls_iterations
    hand = []
    for i, geom in enumerate(spec.worldbody.find_all(mujoco.mjtObj.mjOBJ_GEOM)):
        body = geom.parent.name
        if body == "object":
            geom.name = "ball"
            geom.size = [cfg.ball_radius, 0.0, 0.0]
        elif (geom.contype or geom.conaffinity) and body not in ("world", "rh_forearm", "rh_wrist"):
            geom.name = geom.name or f"{body}_collision{i}"
            if geom.type == mujoco.mjtGeom.mjGEOM_MESH:  # fingertip: a capsule of its extent
                radius, top = (0.0095, 0.026) if body == "rh_thdistal" else (0.008, 0.024)
                geom.type = mujoco.mjtGeom.mjGEOM_CAPSULE
                geom.meshname = ""
                geom.size = [radius, 0.0, 0.0]
                geom.fromto = [0.0, 0.0, radius, 0.0, 0.0, top]
            hand.append(geom.name)
        geom.contype = 0  # every contact is an explicit pair below
        geom.conaffinity = 0
    for name in [*hand, "floor"]:
        spec.add_pair(geomname1="ball", geomname2=name)
    spec.worldbody.add_site(
        name="target", pos=list(cfg.target), size=[0.005, 0.0, 0.0], rgba=[1.0, 0.0, 0.0, 0.5]
    )
    return spec.compile()


class DexterousHand(Task):
    """Shadow Hand, palm up: catch the dropped ball and cradle it at `target`. No termination."""

    classifier_obs = (0, 3)  # the ball position

    def __init__(self, config: HandConfig | None = None, reward: str = "sparse"):
        if reward not in ("sparse", "dense"):
            raise ValueError(f"reward={reward!r} is not one of 'sparse', 'dense'")
        self.config = cfg = config or HandConfig()
        self.reward_type = reward
        self.episode_length = cfg.episode_length
        self.mj_model = m = build_model(cfg)
        ball_joint = m.body("object").jntadr[0]
        self._ball_q = int(m.jnt_qposadr[ball_joint])
        self._ball_v = int(m.jnt_dofadr[ball_joint])
        joints = m.actuator_trnid[:, 0]
        self._hand_q = np.asarray(m.jnt_qposadr[joints], np.int32)
        self._hand_v = np.asarray(m.jnt_dofadr[joints], np.int32)
        self._joint_range = np.asarray(m.jnt_range[joints], np.float32)
        ctrl = np.asarray(m.actuator_ctrlrange, np.float32)
        self._ctrl_mid = (ctrl[:, 0] + ctrl[:, 1]) / 2
        self._ctrl_half = (ctrl[:, 1] - ctrl[:, 0]) / 2
        names = [m.actuator(i).name.removeprefix("rh_A_") for i in range(m.nu)]
        cup = {f"{f}J{3 - k}": v for f in _FINGERS for k, v in enumerate(_CUP_FINGER)}
        self._cup_pose = np.asarray([cup.get(n, 0.0) for n in names], np.float32)
        self._target = np.asarray(cfg.target, np.float32)
        with jax.ensure_compile_time_eval():  # concrete arrays even if built inside a trace
            self.mjx_model = mjx.put_model(m)

    @property
    def observation_size(self) -> int:
        return 9 + 2 * self.action_size

    @property
    def action_size(self) -> int:
        return int(self.mj_model.nu)

    @property
    def dt(self) -> float:
        return self.config.timestep * self.config.frame_skip

    @property
    def target(self) -> jax.Array:
        return jnp.asarray(self._target)

    # -- Simulation --

    def _data(self, hand_q: jax.Array, ball_pos: jax.Array):
        """A fresh mjx.Data: hand at `hand_q` with servos holding it, the ball at rest."""
        d = mjx.make_data(self.mjx_model)
        qpos = d.qpos.at[self._hand_q].set(hand_q)
        qpos = qpos.at[self._ball_q : self._ball_q + 3].set(ball_pos)
        qpos = qpos.at[self._ball_q + 3 : self._ball_q + 7].set(jnp.array([1.0, 0.0, 0.0, 0.0]))
        ctrl = jnp.clip(hand_q, self._ctrl_mid - self._ctrl_half, self._ctrl_mid + self._ctrl_half)
        return d.replace(qpos=qpos, ctrl=ctrl)

    def _simulate(self, data, ctrl: jax.Array):
        """`frame_skip` physics steps with the servo targets `ctrl`."""
        data = data.replace(ctrl=ctrl)

        def body(d, _):
            return mjx.step(self.mjx_model, d), None

        data, _ = jax.lax.scan(body, data, None, length=self.config.frame_skip)
        return data

    def _obs(self, data) -> jax.Array:
        b, v = self._ball_q, self._ball_v
        return jnp.concatenate(
            [
                data.qpos[b : b + 3],
                data.qvel[v : v + 6],
                data.qpos[self._hand_q],
                data.qvel[self._hand_v],
            ]
        ).astype(jnp.float32)

    def _noisy_pose(self, rng: jax.Array, pose: jax.Array) -> jax.Array:
        noise = self.config.joint_noise
        q = pose + jax.random.uniform(rng, pose.shape, minval=-noise, maxval=noise)
        return jnp.clip(q, self._joint_range[:, 0], self._joint_range[:, 1])

    def reset(self, rng: jax.Array) -> State:
        k_hand, k_ball = jax.random.split(rng)
        noise = self.config.ball_start_noise
        xy = jax.random.uniform(k_ball, (2,), minval=-noise, maxval=noise)
        ball = jnp.asarray(self.config.ball_start, jnp.float32).at[:2].add(xy)
        data = self._data(self._noisy_pose(k_hand, jnp.zeros(self.action_size)), ball)
        zero = jnp.zeros((), jnp.float32)
        return State(data, self._obs(data), zero, zero, metrics={}, info={})

    def step(self, state: State, action: jax.Array) -> State:
        ctrl = self._ctrl_mid + jnp.clip(action, -1.0, 1.0) * self._ctrl_half
        data = self._simulate(state.pipeline_state, ctrl)
        obs = self._obs(data)
        if self.reward_type == "dense":
            reward = self.dense_reward(state.obs, obs)
        else:
            reward = self.sparse_reward(state.obs, obs)
        return state.replace(
            pipeline_state=data, obs=obs, reward=reward, done=jnp.zeros((), jnp.float32)
        )

    # -- Task API --

    def goal_distance(self, obs: jax.Array) -> jax.Array:
        return jnp.linalg.norm(obs[..., :3] - self._target, axis=-1)

    def is_success(self, obs: jax.Array) -> jax.Array:
        return self.goal_distance(obs) < self.config.success_tolerance

    def dense_reward(self, obs: jax.Array, next_obs: jax.Array) -> jax.Array:
        """Negative (capped) distance of the next ball position to the target, in [-3, 0]."""
        del obs
        cfg = self.config
        return -jnp.minimum(self.goal_distance(next_obs), cfg.dense_cap) / cfg.dense_scale

    def success_examples(self, rng: jax.Array, n: int) -> jax.Array:
        """Ball placed at the target (plus noise) in a noisy cup pose, settled by simulation.

        Each of `n` hands holds its pose (servo targets fixed) for `settle_steps` env steps;
        `n` states that pass `is_success` are drawn from the last half of the settle (nearly
        at rest), preferring successes (the settled cup keeps the ball, so there are plenty).
        """
        cfg = self.config
        k_hand, k_ball, k_pick = jax.random.split(rng, 3)
        cup = jnp.asarray(self._cup_pose)
        poses = jax.vmap(lambda k: self._noisy_pose(k, cup))(jax.random.split(k_hand, n))
        tol = cfg.success_tolerance / 4
        offset = jax.random.uniform(k_ball, (n, 3), minval=-tol, maxval=tol)
        balls = self._target + offset + jnp.array([0.0, 0.0, 0.005])

        def settle(q, ball):
            data = self._data(q, ball)
            ctrl = data.ctrl

            def body(d, _):
                d = self._simulate(d, ctrl)
                return d, self._obs(d)

            _, visited = jax.lax.scan(body, data, None, length=cfg.settle_steps)
            return visited[cfg.settle_steps // 2 :]

        pool = jax.vmap(settle)(poses, balls).reshape(-1, self.observation_size)
        ok = self.is_success(pool)
        priority = jnp.where(ok, jax.random.uniform(k_pick, ok.shape), -1.0)
        _, chosen = jax.lax.top_k(priority, n)
        return pool[chosen]


def make_dexterous_hand(**kwargs) -> DexterousHand:
    """Factory for the registry: `DexterousHand(HandConfig(), **kwargs)` (e.g. reward=)."""
    return DexterousHand(**kwargs)
