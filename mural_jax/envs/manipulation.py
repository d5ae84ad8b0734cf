"""Table-top manipulation analogs of the paper's Sawyer tasks, simulated with MuJoCo MJX.

Three tasks share one end effector on a table (z = 0 is the table top, y points away from the
robot base), position controlled like the Sawyer tasks' mocap: an action is a bounded
displacement, and the hand is driven to `clip(hand + clip(a, -1, 1) * scale, workspace)`.

The hand is a body on three (push: two) slide joints driven by position actuators, not a mocap
body welded to a free hand. Why: the slide joints keep the hand upright and inside the
workspace by construction, gravity compensation removes the vertical sag, and the joint
damping is integrated implicitly, so a stiff critically damped drive is stable at a 10 ms time
step; a weld to a mocap body is a soft constraint that adds six constraint rows and drifts
under contact. The drive reaches ~80% of a commanded displacement within one 50 ms control
step. Targets are taken from the measured hand position (not accumulated like a mocap target),
so a blocked hand never builds up a hidden command and the positions-only observation stays
(nearly) Markov.

Models are kept small for cheap compiles and CPU stepping: primitive geoms, only the contact
pairs a task needs (explicit `<pair>`s), a 4-iteration Newton solver, 5 substeps of 10 ms per
control step. The hand's workspace keeps its geoms off the table, so hand-table contacts are
never needed. Measured pitfalls this layout avoids: MJX's capsule-cylinder and sphere-cylinder
contacts are SDF-based (unreliable), so the puck's side is a coaxial capsule; a light puck
with pyramidal table friction hops and can be launched when hit (the friction rows push
on the normal), so the puck slides on a frictionless table with viscous drag on its x/y joints;
a light, fast gripper tunnels through (or squirts out) the ball and soft contacts let a held
ball creep, so the fingers are heavier and overdamped and the grasp contacts hard (solimp 0.99).

- `sawyer_push`: push a puck (a cylinder on x/y/z slide joints: upright, it never tips) from a
  random start to (0, 0.75); success: puck xy within 0.03. The hand moves in xy at the puck's
  height (the original's SawyerPushAndReachXY: 2D action). Observation: hand xy, puck xy.
- `sawyer_door`: a vertical finger (the hook) goes down between a hinged door and its pull bar
  and pulls the door open to 0.80 rad (joint limit 0.83); success within 0.02 rad.
  Observation: hand xyz, door angle.
- `sawyer_pick`: a two-finger gripper (4th action: -1 open ... +1 closed, an absolute finger
  command like the original's) grasps a ball and lifts it to (0, 0.6, 0.20); success within
  0.03. The ball translates only (three slide joints): a free ball rolls out of reach under
  random exploration. Observation: hand xyz, ball xyz, finger opening.

Success examples follow the paper: push, the goal state with +-0.01 noise; door and pick, the
states a scripted controller (`scripted_action`, pure JAX) reaches from random starts that pass
`is_success`.
"""

from __future__ import annotations

import abc

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from brax.envs.base import State
from mujoco import mjx

from mural_jax.envs.base import Task

_TIMESTEP = 0.01  # physics step (s)
_SUBSTEPS = 5  # physics steps per control step (50 ms)
_OPTION = (
    '<compiler angle="radian"/>'
    f'<option timestep="{_TIMESTEP}" iterations="4" ls_iterations="8" solver="Newton"/>'
    '<default><geom contype="0" conaffinity="0"/></default>'
)
#: Hand drive: kp 360 N/m, critically damped for the hand's moving mass.
_HAND_KP = 360.0
_TABLE = '<geom name="table" type="plane" size="0.6 0.6 0.01" pos="0 0.65 0" rgba=".8 .7 .6 1"/>'


def _hand_joints(axes: str, mass: float) -> str:
    """Slide joints named hand_x/y/z (only the listed axes), critically damped for `mass`."""
    vec = {"x": "1 0 0", "y": "0 1 0", "z": "0 0 1"}
    damping = 2.0 * np.sqrt(mass * _HAND_KP)
    return "\n".join(
        f'<joint name="hand_{a}" type="slide" axis="{vec[a]}" damping="{damping:.4g}"/>'
        for a in axes
    )


Bound = float | tuple[float, ...]


def _uniform(rng: jax.Array, low: Bound, high: Bound, n: int | None = None) -> jax.Array:
    """Uniform in the box [low, high] (per-axis bounds, or scalars with `n` axes)."""
    shape = (n,) if n is not None else (len(low),)
    return jax.random.uniform(rng, shape, minval=jnp.asarray(low), maxval=jnp.asarray(high))


def _hand_actuators(axes: str, low: np.ndarray, high: np.ndarray) -> str:
    return "\n".join(
        f'<position name="hand_{a}" joint="hand_{a}" kp="{_HAND_KP}" '
        f'ctrlrange="{lo} {hi}" ctrllimited="true"/>'
        for a, lo, hi in zip(axes, low, high, strict=True)
    )


class ManipulationTask(Task, abc.ABC):
    """An MJX table-top task: hand drive, reset, step, and scripted rollouts.

    Subclasses give the MJCF, the reset distribution, the observation and the task's geometry.
    The step's reward is the task's sparse reward (or its dense oracle with `reward="dense"`);
    `done` is always 0 (the trainer truncates at `episode_length`).
    """

    episode_length = 100  # the paper's horizon
    #: Hand axes that are actuated, and their workspace (the hand target is clipped into it).
    hand_axes: str = "xyz"
    hand_low: tuple[float, ...] = ()
    hand_high: tuple[float, ...] = ()
    #: Largest hand displacement per step (m); the drive covers ~80% of it in one step.
    action_scale: float = 0.02
    #: Normaliser of the dense oracle (m): a typical start's distance, so rewards are O(1).
    dense_scale: float = 0.3

    def __init__(self, reward: str = "sparse"):
        if reward not in ("sparse", "dense"):
            raise ValueError(f"reward={reward!r} is not one of 'sparse', 'dense'")
        self.reward_type = reward
        self.mj_model = mujoco.MjModel.from_xml_string(self.xml())
        self._model = mjx.put_model(self.mj_model)
        # Host (numpy) leaves: reset's output is then uncommitted like a jitted step's, so a
        # jitted step sees one argument signature and compiles once.
        self._data0 = jax.tree.map(np.asarray, mjx.make_data(self.mj_model))
        self._low = jnp.asarray(self.hand_low, jnp.float32)
        self._high = jnp.asarray(self.hand_high, jnp.float32)
        self._hand_qpos = self._qpos_address(["hand_" + a for a in self.hand_axes])

    # -- model --

    @abc.abstractmethod
    def xml(self) -> str:
        """The task's MJCF."""

    def _qpos_address(self, joints: list[str]) -> np.ndarray:
        return np.asarray([self.mj_model.joint(j).qposadr[0] for j in joints])

    @property
    def action_size(self) -> int:
        return len(self.hand_axes)

    def hand_pos(self, data: mjx.Data) -> jax.Array:
        """The hand's actuated coordinates (the slide joints sit at the world origin)."""
        return data.qpos[self._hand_qpos]

    # -- dynamics --

    @abc.abstractmethod
    def _initial_qpos(self, rng: jax.Array) -> jax.Array:
        """A random start configuration, shape (nq,)."""

    @abc.abstractmethod
    def _obs(self, data: mjx.Data) -> jax.Array:
        """Flat float32 observation."""

    def _control(self, data: mjx.Data, action: jax.Array) -> jax.Array:
        """Actuator targets: the hand displaced by the scaled action, inside the workspace."""
        hand = self.hand_pos(data)
        delta = jnp.clip(action[: len(self.hand_axes)], -1.0, 1.0) * self.action_scale
        return jnp.clip(hand + delta, self._low, self._high)

    def _rest_control(self, qpos: jax.Array) -> jax.Array:
        """Actuator targets that hold a start configuration still."""
        return qpos[self._hand_qpos]

    def _physics(self, data: mjx.Data, ctrl: jax.Array) -> mjx.Data:
        data = data.replace(ctrl=ctrl)
        return jax.lax.fori_loop(0, _SUBSTEPS, lambda _, d: mjx.step(self._model, d), data)

    def reset(self, rng: jax.Array) -> State:
        qpos = self._initial_qpos(rng)
        data = self._data0.replace(
            qpos=qpos, qvel=jnp.zeros_like(self._data0.qvel), ctrl=self._rest_control(qpos)
        )
        zero = jnp.zeros((), jnp.float32)
        return State(data, self._obs(data), zero, zero, metrics={}, info={})

    def step(self, state: State, action: jax.Array) -> State:
        if action.shape != (self.action_size,):
            raise ValueError(f"action shape {action.shape} != ({self.action_size},)")
        data = self._physics(state.pipeline_state, self._control(state.pipeline_state, action))
        obs = self._obs(data)
        if self.reward_type == "dense":
            reward = self.dense_reward(state.obs, obs)
        else:
            reward = self.sparse_reward(state.obs, obs)
        done = jnp.zeros((), jnp.float32)
        return state.replace(pipeline_state=data, obs=obs, reward=reward, done=done)

    # -- scripted control --

    @abc.abstractmethod
    def scripted_action(self, obs: jax.Array) -> jax.Array:
        """A hand-written closed-loop controller that solves the task from a random start."""

    def _toward(self, target: jax.Array, hand: jax.Array) -> jax.Array:
        """The action that moves the hand straight to `target` (proportional, saturating
        without changing the direction)."""
        a = (target - hand) / self.action_scale
        return a / jnp.maximum(1.0, jnp.max(jnp.abs(a)))

    def scripted_rollout(self, rng: jax.Array, n: int, steps: int | None = None) -> jax.Array:
        """Observations of `n` scripted episodes from random starts: (steps + 1, n, obs)."""
        steps = self.episode_length if steps is None else steps
        state = jax.vmap(self.reset)(jax.random.split(rng, n))

        def body(s, _):
            s = jax.vmap(self.step)(s, jax.vmap(self.scripted_action)(s.obs))
            return s, s.obs

        _, traj = jax.lax.scan(body, state, None, length=steps)
        return jnp.concatenate([state.obs[None], traj], axis=0)

    def select_successes(self, rng: jax.Array, pool: jax.Array, n: int) -> jax.Array:
        """`n` observations drawn at random from those in `pool` (any leading shape) that pass
        `is_success` (non-successes fill in only if there are fewer than `n`)."""
        pool = pool.reshape(-1, self.observation_size)
        ok = self.is_success(pool).astype(jnp.float32)
        _, chosen = jax.lax.top_k(ok + jax.random.uniform(rng, ok.shape), n)
        return pool[chosen]

    def success_examples(self, rng: jax.Array, n: int) -> jax.Array:
        """As in the paper (pick, door): successful states of the scripted controller.

        `n` scripted episodes from random starts; `n` of all their successful states (any time
        step) are kept at random.
        """
        k_roll, k_pick = jax.random.split(rng)
        return self.select_successes(k_pick, self.scripted_rollout(k_roll, n), n)

    def _reward(self, cost: jax.Array) -> jax.Array:
        return -cost / self.dense_scale


# -- Push -------------------------------------------------------------------------------------

_PUCK_RADIUS = 0.03
_PUSHER_RADIUS = 0.015
_PUSH_CONTACT = _PUCK_RADIUS + _PUSHER_RADIUS  # hand-puck centre distance at contact
_PUCK_MASS = 0.05
_PUCK_DAMPING = _PUCK_MASS / 0.03  # sliding drag: a free puck stops within ~0.1 s


class SawyerPush(ManipulationTask):
    """Push a puck to (0, 0.75); success within 0.03. Observation: hand xy, puck xy."""

    classifier_obs = (0, 4)  # hand and puck
    hand_axes = "xy"
    hand_low = (-0.3, 0.35)
    hand_high = (0.3, 0.95)
    goal_xy = (0.0, 0.75)
    success_radius = 0.03
    #: Reset: hand at (0, 0.4) +- 0.05; puck uniform in this box (at least 0.05 from the goal).
    puck_low = (-0.2, 0.5)
    puck_high = (0.2, 0.7)
    hand_start = (0.0, 0.4)

    def __init__(self, reward: str = "sparse"):
        super().__init__(reward)
        self._goal = jnp.asarray(self.goal_xy, jnp.float32)
        self._puck_qpos = self._qpos_address(["puck_x", "puck_y", "puck_z"])

    def xml(self) -> str:
        lo, hi = np.asarray(self.hand_low), np.asarray(self.hand_high)
        r, h = _PUCK_RADIUS, 0.015
        return f"""
<mujoco model="sawyer_push">
  {_OPTION}
  <worldbody>
    {_TABLE}
    <body name="hand" pos="0 0 0.017" gravcomp="1">
      {_hand_joints("xy", 0.1)}
      <geom name="pusher" type="capsule" fromto="0 0 0 0 0 0.04" size="{_PUSHER_RADIUS}"
            mass="0.1"/>
    </body>
    <body name="puck" pos="0 0 {h}">
      <joint name="puck_x" type="slide" axis="1 0 0" damping="{_PUCK_DAMPING}"/>
      <joint name="puck_y" type="slide" axis="0 1 0" damping="{_PUCK_DAMPING}"/>
      <joint name="puck_z" type="slide" axis="0 0 1"/>
      <geom name="puck" type="cylinder" size="{r} {h}" mass="{_PUCK_MASS}" rgba=".2 .2 .8 1"/>
      <geom name="puck_rim" type="capsule" fromto="0 0 0 0 0 {h}" size="{r}" mass="0" group="3"/>
    </body>
  </worldbody>
  <contact>
    <pair geom1="puck" geom2="table" condim="1"/>
    <pair geom1="puck_rim" geom2="pusher" condim="1"/>
  </contact>
  <actuator>{_hand_actuators("xy", lo, hi)}</actuator>
</mujoco>"""

    @property
    def observation_size(self) -> int:
        return 4

    @property
    def goal(self) -> jax.Array:
        return self._goal

    def _initial_qpos(self, rng: jax.Array) -> jax.Array:
        k_hand, k_puck = jax.random.split(rng)
        hand = jnp.asarray(self.hand_start) + _uniform(k_hand, -0.05, 0.05, 2)
        puck = _uniform(k_puck, self.puck_low, self.puck_high)
        qpos = jnp.asarray(self.mj_model.qpos0, jnp.float32)
        qpos = qpos.at[self._hand_qpos].set(hand)
        return qpos.at[self._puck_qpos[:2]].set(puck)

    def puck_pose(self, data: mjx.Data) -> jax.Array:
        """The puck's xyz (z: its centre's height above its resting height)."""
        return data.qpos[self._puck_qpos]

    def _obs(self, data: mjx.Data) -> jax.Array:
        return jnp.concatenate([self.hand_pos(data), self.puck_pose(data)[:2]]).astype(jnp.float32)

    # -- Task API --

    def goal_distance(self, obs: jax.Array) -> jax.Array:
        return jnp.linalg.norm(obs[..., 2:4] - self._goal, axis=-1)

    def is_success(self, obs: jax.Array) -> jax.Array:
        return self.goal_distance(obs) < self.success_radius

    def dense_reward(self, obs: jax.Array, next_obs: jax.Array) -> jax.Array:
        """-(hand's gap to the puck + puck's distance to the goal) / 0.3 m."""
        del obs
        gap = jnp.linalg.norm(next_obs[..., :2] - next_obs[..., 2:4], axis=-1) - _PUSH_CONTACT
        return self._reward(jnp.maximum(gap, 0.0) + self.goal_distance(next_obs))

    def success_examples(self, rng: jax.Array, n: int) -> jax.Array:
        """As in the paper: the goal state with +-0.01 noise (puck at the goal, the hand just
        behind it, on the robot's side, as it is after pushing it there)."""
        k_puck, k_hand = jax.random.split(rng)
        puck = self._goal + jax.random.uniform(k_puck, (n, 2), minval=-0.01, maxval=0.01)
        behind = jnp.asarray([0.0, -(_PUSH_CONTACT + 0.005)])
        hand = puck + behind + jax.random.uniform(k_hand, (n, 2), minval=-0.01, maxval=0.01)
        return jnp.concatenate([hand, puck], axis=-1)

    def scripted_action(self, obs: jax.Array) -> jax.Array:
        """Go round the puck to the point behind it (seen from the goal), then push it home.

        In the puck's frame (`dir` toward the goal, `perp` across): behind and on the line,
        push (aim the hand at where the contact point should be next, at most 3 cm ahead);
        behind but off the line, back off to 3 cm behind the contact point on the line; beside
        or in front, step sideways clear of the puck, then back along its side. Within 1.5 cm of
        the goal, keep still; pushing, slow down near it.
        """
        hand, puck = obs[:2], obs[2:4]
        to_goal = self._goal - puck
        dist = jnp.linalg.norm(to_goal)
        dir_ = to_goal / jnp.maximum(dist, 1e-6)
        perp = jnp.stack([-dir_[1], dir_[0]])
        rel = hand - puck
        along, lateral = rel @ dir_, rel @ perp
        side = jnp.where(lateral >= 0.0, 1.0, -1.0)
        clear = _PUSH_CONTACT + 0.035
        push = puck + dir_ * (jnp.minimum(dist, 0.03) - _PUSH_CONTACT)
        back_off = puck - dir_ * (_PUSH_CONTACT + 0.03)
        sidestep = puck + perp * side * clear + dir_ * along
        round_ = puck + perp * side * clear - dir_ * (_PUSH_CONTACT + 0.03)
        pushing = (along < -0.5 * _PUSH_CONTACT) & (jnp.abs(lateral) < 0.012)
        target = jnp.where(
            along < -0.5 * _PUSH_CONTACT,
            jnp.where(pushing, push, back_off),
            jnp.where(jnp.abs(lateral) < clear - 0.015, sidestep, round_),
        )
        target = jnp.where(dist < 0.015, hand, target)  # home: keep still
        # Slow down when pushing near the goal: the puck slides on after a fast hit.
        speed = jnp.where(pushing, jnp.clip(dist / 0.06, 0.25, 1.0), 1.0)
        return speed * self._toward(target, hand)


# -- Door -------------------------------------------------------------------------------------

_HINGE = (-0.15, 0.8)  # door hinge (vertical axis), the door closed along +x from it
_DOOR_WIDTH = 0.3
_HANDLE_S = 0.24  # handle's distance from the hinge along the door
_BAR_OFFSET = 0.06  # pull bar's centre, out of the door's mid-plane toward the robot
_BAR_Z = 0.12
_BAR_RADIUS = 0.01
_FINGER_RADIUS = 0.01
_DOOR_HALF_THICKNESS = 0.01
# Finger-centre offsets from the door's mid-plane at contact with the panel and with the bar.
_PANEL_CONTACT = _DOOR_HALF_THICKNESS + _FINGER_RADIUS
_BAR_CONTACT = _BAR_OFFSET - _BAR_RADIUS - _FINGER_RADIUS
_SLOT = 0.5 * (_PANEL_CONTACT + _BAR_CONTACT)


class SawyerDoor(ManipulationTask):
    """Pull a hinged door open to 0.80 rad (limit 0.83); success within 0.02 rad.

    Observation: hand xyz, door angle. The hand's hook is a vertical finger that hangs 6 cm
    below the hand; it goes down into the slot between the door and a pull bar held out on two
    standoffs, then pulls the bar toward the robot, swinging the door about its vertical hinge.
    """

    classifier_obs = (0, 4)  # hand and door angle
    hand_axes = "xyz"
    hand_low = (-0.3, 0.35, 0.1)
    hand_high = (0.3, 0.9, 0.3)
    target_angle = 0.80
    max_angle = 0.83
    success_tolerance = 0.02
    dense_scale = 0.4
    #: Hand heights: clear of the bar (hover) and with the finger across the bar (pull).
    z_hover = 0.25
    z_pull = 0.15

    def __init__(self, reward: str = "sparse"):
        super().__init__(reward)
        self._door_qpos = self._qpos_address(["door"])[0]
        self._hinge = jnp.asarray(_HINGE, jnp.float32)

    def xml(self) -> str:
        lo, hi = np.asarray(self.hand_low), np.asarray(self.hand_high)
        w, s, off, zb = _DOOR_WIDTH, _HANDLE_S, _BAR_OFFSET, _BAR_Z
        t = _DOOR_HALF_THICKNESS
        stand = 0.5 * (off - t)  # standoffs: from the panel's face to the bar
        friction = 'friction="0.2 0.2 0.005 0.0001 0.0001"'
        return f"""
<mujoco model="sawyer_door">
  {_OPTION}
  <worldbody>
    {_TABLE}
    <body name="hand" pos="0 0 0" gravcomp="1">
      {_hand_joints("xyz", 0.1)}
      <geom name="finger" type="capsule" fromto="0 0 -0.06 0 0 0" size="{_FINGER_RADIUS}"
            mass="0.1" rgba=".3 .3 .3 1"/>
    </body>
    <body name="door" pos="{_HINGE[0]} {_HINGE[1]} 0">
      <joint name="door" type="hinge" axis="0 0 -1" range="0 {self.max_angle}" limited="true"
             damping="0.5"/>
      <geom name="panel" type="box" pos="{w / 2} 0 0.11" size="{w / 2} {t} 0.09" mass="1"
            rgba=".6 .4 .2 1"/>
      <geom name="bar" type="capsule" fromto="{s - 0.04} {-off} {zb} {s + 0.04} {-off} {zb}"
            size="{_BAR_RADIUS}" mass="0.05" rgba=".7 .7 .7 1"/>
      <geom name="stand_a" type="box" pos="{s - 0.04} {-(t + stand)} {zb}"
            size="0.005 {stand} 0.01" mass="0.01"/>
      <geom name="stand_b" type="box" pos="{s + 0.04} {-(t + stand)} {zb}"
            size="0.005 {stand} 0.01" mass="0.01"/>
    </body>
  </worldbody>
  <contact>
    <pair geom1="finger" geom2="bar" {friction}/>
    <pair geom1="finger" geom2="panel" {friction}/>
    <pair geom1="finger" geom2="stand_a" {friction}/>
    <pair geom1="finger" geom2="stand_b" {friction}/>
  </contact>
  <actuator>{_hand_actuators("xyz", lo, hi)}</actuator>
</mujoco>"""

    @property
    def observation_size(self) -> int:
        return 4

    def _initial_qpos(self, rng: jax.Array) -> jax.Array:
        hand = _uniform(rng, (-0.1, 0.4, 0.2), (0.1, 0.5, 0.3))
        qpos = jnp.zeros(self.mj_model.nq, jnp.float32)
        return qpos.at[self._hand_qpos].set(hand)  # the door starts closed

    def _obs(self, data: mjx.Data) -> jax.Array:
        angle = data.qpos[self._door_qpos][None]
        return jnp.concatenate([self.hand_pos(data), angle]).astype(jnp.float32)

    def door_frame(self, angle: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Unit vectors along the door (away from the hinge) and out of it toward the robot."""
        c, s = jnp.cos(angle), jnp.sin(angle)
        return jnp.stack([c, -s], -1), jnp.stack([-s, -c], -1)

    def slot_point(self, angle: jax.Array, offset: float | jax.Array = _SLOT) -> jax.Array:
        """xy of the point `offset` out of the door at the handle, for a door angle."""
        along, out = self.door_frame(angle)
        return self._hinge + _HANDLE_S * along + jnp.asarray(offset)[..., None] * out

    # -- Task API --

    def goal_distance(self, obs: jax.Array) -> jax.Array:
        return jnp.abs(obs[..., 3] - self.target_angle)

    def is_success(self, obs: jax.Array) -> jax.Array:
        return self.goal_distance(obs) < self.success_tolerance

    def dense_reward(self, obs: jax.Array, next_obs: jax.Array) -> jax.Array:
        """-(hand's distance to the slot + the handle's arc length to the goal) / 0.4 m."""
        del obs
        angle = next_obs[..., 3]
        slot = jnp.concatenate(
            [self.slot_point(angle), jnp.full_like(angle, self.z_pull)[..., None]], -1
        )
        reach = jnp.linalg.norm(next_obs[..., :3] - slot, axis=-1)
        return self._reward(reach + _HANDLE_S * self.goal_distance(next_obs))

    def scripted_action(self, obs: jax.Array, target: float | jax.Array = 0.80) -> jax.Array:
        """Hover over the slot, go down into it, then pull the bar along the door's arc.

        Pulling aims the finger at the bar's contact position for an angle at most 0.1 rad
        nearer `target` (or at the panel's, to push back after an overshoot), slowing down near
        it, so the door is servoed to `target`; within 0.005 rad the finger lets go (mid-slot).
        A finger that leaves the slot goes back up and tries again.
        """
        hand, angle = obs[:3], obs[3]
        along, out = self.door_frame(angle)
        rel = hand[:2] - self._hinge
        s, o = rel @ along, rel @ out
        low = hand[2] < self.z_pull + 0.015
        in_slot = low & (jnp.abs(s - _HANDLE_S) < 0.03) & (o > _PANEL_CONTACT - 0.005)
        in_slot &= o < _BAR_CONTACT + 0.01
        aligned = (jnp.abs(s - _HANDLE_S) < 0.015) & (jnp.abs(o - _SLOT) < 0.006)
        err = target - angle
        contact = jnp.where(err > 0.005, _BAR_CONTACT, _PANEL_CONTACT)
        contact = jnp.where(jnp.abs(err) <= 0.005, _SLOT, contact)  # at the goal: let go
        pull = self.slot_point(angle + jnp.clip(err, -0.1, 0.1), contact)
        slot = self.slot_point(angle)
        xy = jnp.where(in_slot, pull, slot)
        z = jnp.where(in_slot | aligned, self.z_pull, self.z_hover)
        # Slow down near the goal: the door swings on after a fast pull.
        speed = jnp.where(in_slot, jnp.clip(jnp.abs(err) / 0.2, 0.3, 1.0), 1.0)
        return speed * self._toward(jnp.concatenate([xy, z[None]]), hand)


# -- Pick -------------------------------------------------------------------------------------

_BALL_RADIUS = 0.02
_GRASP_DZ = 0.04  # hand height above the ball's centre when the fingers hold it at mid-height
_OPEN = 0.045  # finger inner faces' distance from the hand axis when open


class SawyerPick(ManipulationTask):
    """Grasp a ball and lift it to (0, 0.6, 0.20); success within 0.03.

    Observation: hand xyz, ball xyz, finger opening (each inner face's distance from the hand
    axis). Action: hand displacement xyz and a gripper command in [-1 open, +1 closed]; the
    fingers are driven to `0.045 * (1 - grip) / 2`, so a held ball is squeezed with ~1 N.
    """

    classifier_obs = (0, 6)  # hand and ball
    hand_axes = "xyz"
    hand_low = (-0.3, 0.35, 0.06)  # the fingers' tips stay 5 mm above the table
    hand_high = (0.3, 0.9, 0.3)
    goal_xyz = (0.0, 0.6, 0.20)
    success_radius = 0.03
    ball_low = (-0.15, 0.5)
    ball_high = (0.15, 0.7)
    finger_kp = 100.0

    def __init__(self, reward: str = "sparse"):
        super().__init__(reward)
        self._goal = jnp.asarray(self.goal_xyz, jnp.float32)
        self._finger_qpos = self._qpos_address(["finger_l", "finger_r"])
        self._ball_qpos = self._qpos_address(["ball_x", "ball_y", "ball_z"])

    def xml(self) -> str:
        lo, hi = np.asarray(self.hand_low), np.asarray(self.hand_high)
        finger = 'type="box" size="0.005 0.02 0.025" mass="0.05" rgba=".3 .3 .3 1"'
        fdamp = 6.0 * np.sqrt(0.05 * self.finger_kp)  # 3x critical: the fingers close gently
        grip = 'friction="1 1 0.005 0.0001 0.0001" solimp="0.99 0.99 0.001 0.5 2"'
        return f"""
<mujoco model="sawyer_pick">
  {_OPTION}
  <worldbody>
    {_TABLE}
    <body name="hand" pos="0 0 0" gravcomp="1">
      {_hand_joints("xyz", 0.2)}
      <geom name="palm" type="box" pos="0 0 0.01" size="0.055 0.015 0.01" mass="0.1"/>
      <body name="finger_l" gravcomp="1">
        <joint name="finger_l" type="slide" axis="1 0 0" range="0 0.05" limited="true"
               damping="{fdamp}"/>
        <geom name="finger_l" pos="0.005 0 -0.03" {finger}/>
      </body>
      <body name="finger_r" gravcomp="1">
        <joint name="finger_r" type="slide" axis="-1 0 0" range="0 0.05" limited="true"
               damping="{fdamp}"/>
        <geom name="finger_r" pos="-0.005 0 -0.03" {finger}/>
      </body>
    </body>
    <body name="ball">
      <joint name="ball_x" type="slide" axis="1 0 0"/>
      <joint name="ball_y" type="slide" axis="0 1 0"/>
      <joint name="ball_z" type="slide" axis="0 0 1"/>
      <geom name="ball" type="sphere" size="{_BALL_RADIUS}" mass="0.05" rgba=".8 .2 .2 1"/>
    </body>
  </worldbody>
  <contact>
    <pair geom1="ball" geom2="table" friction="0.5 0.5 0.005 0.0001 0.0001"/>
    <pair geom1="ball" geom2="finger_l" {grip}/>
    <pair geom1="ball" geom2="finger_r" {grip}/>
  </contact>
  <actuator>
    {_hand_actuators("xyz", lo, hi)}
    <position name="finger_l" joint="finger_l" kp="{self.finger_kp}" ctrlrange="0 0.05"
              ctrllimited="true"/>
    <position name="finger_r" joint="finger_r" kp="{self.finger_kp}" ctrlrange="0 0.05"
              ctrllimited="true"/>
  </actuator>
</mujoco>"""

    @property
    def observation_size(self) -> int:
        return 7

    @property
    def action_size(self) -> int:
        return 4

    @property
    def goal(self) -> jax.Array:
        return self._goal

    def _initial_qpos(self, rng: jax.Array) -> jax.Array:
        k_hand, k_ball = jax.random.split(rng)
        hand = jnp.asarray([0.0, 0.45, 0.15]) + _uniform(k_hand, -0.05, 0.05, 3)
        ball = _uniform(k_ball, self.ball_low, self.ball_high)
        qpos = jnp.zeros(self.mj_model.nq, jnp.float32).at[self._hand_qpos].set(hand)
        qpos = qpos.at[self._finger_qpos].set(_OPEN)
        return qpos.at[self._ball_qpos].set(jnp.append(ball, _BALL_RADIUS))

    def _rest_control(self, qpos: jax.Array) -> jax.Array:
        return jnp.concatenate([qpos[self._hand_qpos], qpos[self._finger_qpos]])

    def _control(self, data: mjx.Data, action: jax.Array) -> jax.Array:
        grip = jnp.clip(action[3], -1.0, 1.0)
        fingers = jnp.full((2,), _OPEN * 0.5 * (1.0 - grip))
        return jnp.concatenate([super()._control(data, action), fingers])

    def _obs(self, data: mjx.Data) -> jax.Array:
        opening = jnp.mean(data.qpos[self._finger_qpos])[None]
        parts = [self.hand_pos(data), data.qpos[self._ball_qpos], opening]
        return jnp.concatenate(parts).astype(jnp.float32)

    # -- Task API --

    def goal_distance(self, obs: jax.Array) -> jax.Array:
        return jnp.linalg.norm(obs[..., 3:6] - self._goal, axis=-1)

    def is_success(self, obs: jax.Array) -> jax.Array:
        return self.goal_distance(obs) < self.success_radius

    def dense_reward(self, obs: jax.Array, next_obs: jax.Array) -> jax.Array:
        """-(grasp point's distance to the ball + ball's distance to the goal) / 0.3 m."""
        del obs
        grasp = next_obs[..., :3] - jnp.asarray([0.0, 0.0, _GRASP_DZ])
        reach = jnp.linalg.norm(grasp - next_obs[..., 3:6], axis=-1)
        return self._reward(reach + self.goal_distance(next_obs))

    def scripted_action(self, obs: jax.Array) -> jax.Array:
        """Hover above the ball, go down open, close, then carry the ball to the goal.

        Holding (fingers stopped on the ball, ball between them): carry it, correcting for
        any slip in the grasp. At the grasp pose:
        close (reopen if the fingers closed on nothing). Above the ball: go down once open.
        Otherwise: move to 6 cm above the grasp pose with the fingers open.
        """
        hand, ball, opening = obs[:3], obs[3:6], obs[6]
        grasp = ball + jnp.asarray([0.0, 0.0, _GRASP_DZ])
        dxy = jnp.linalg.norm(hand[:2] - ball[:2])
        dz = jnp.abs(hand[2] - grasp[2])
        gripping = (opening < _BALL_RADIUS + 0.006) & (opening > _BALL_RADIUS - 0.008)
        holding = gripping & (dxy < 0.015) & (dz < 0.02)
        at_grasp = (dxy < 0.008) & (dz < 0.008)
        above = dxy < 0.008
        carry = self._goal + hand - ball  # the ball (as held now) to the goal
        descend = jnp.where(opening > _OPEN - 0.005, grasp, hand.at[:2].set(grasp[:2]))
        hover = grasp + jnp.asarray([0.0, 0.0, 0.06])
        target = jnp.where(above, jnp.where(at_grasp, grasp, descend), hover)
        target = jnp.where(holding, carry, target)
        close = holding | (at_grasp & (opening > _BALL_RADIUS - 0.008))
        grip = jnp.where(close, 1.0, -1.0)
        return jnp.append(self._toward(target, hand), grip)


def make_push(**kwargs) -> SawyerPush:
    return SawyerPush(**kwargs)


def make_door(**kwargs) -> SawyerDoor:
    return SawyerDoor(**kwargs)


def make_pick(**kwargs) -> SawyerPick:
    return SawyerPick(**kwargs)
