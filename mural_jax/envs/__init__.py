"""Task registry: `make_env(name)` builds any registered task; names map to factories (data)."""

from __future__ import annotations

from collections.abc import Callable

from mural_jax.envs.ant_maze import ONE_WALL, U_MAZE, AntMaze, AntMazeLayout
from mural_jax.envs.base import Task
from mural_jax.envs.custom import TaskError, is_custom_spec, load_maze, make_custom
from mural_jax.envs.hand import DexterousHand, make_dexterous_hand
from mural_jax.envs.manipulation import ManipulationTask, make_door, make_pick, make_push
from mural_jax.envs.point_maze import SPIRAL, SPIRAL_ORIGINAL, ZIGZAG, MazeLayout, PointMaze

_REGISTRY: dict[str, Callable[..., Task]] = {
    "zigzag_maze": lambda **kw: PointMaze(ZIGZAG, **kw),
    "spiral_maze": lambda **kw: PointMaze(SPIRAL, **kw),
    "spiral_maze_original": lambda **kw: PointMaze(SPIRAL_ORIGINAL, **kw),
    "ant_maze": lambda **kw: AntMaze(ONE_WALL, **kw),
    "ant_u_maze": lambda **kw: AntMaze(U_MAZE, **kw),
    "dexterous_hand": make_dexterous_hand,
    "sawyer_push": make_push,
    "sawyer_door": make_door,
    "sawyer_pick": make_pick,
}


def list_envs() -> list[str]:
    """Names accepted by `make_env`."""
    return sorted(_REGISTRY)


def register(name: str, factory: Callable[..., Task]) -> None:
    """Add a task under `name` (a new maze is one `MazeLayout` and one call)."""
    if name in _REGISTRY:
        raise ValueError(f"task {name!r} is already registered")
    _REGISTRY[name] = factory


ENV_FORMS = "a registered name, brax:NAME, maze:PATH.json|.txt, or module.path:Attr"


def make_env(name: str, **kwargs) -> Task:
    """Build a task: a registered name, or a custom spec (see `mural_jax.envs.custom`).

    An unknown name lists the valid ones. Custom specs take `success_examples`,
    `classifier_obs` and `episode_length` keyword arguments.
    """
    if is_custom_spec(name):
        return make_custom(name, **kwargs)
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown env {name!r}; valid names: {', '.join(list_envs())} "
            f"(or {ENV_FORMS.split(', ', 1)[1]})"
        )
    return _REGISTRY[name](**kwargs)


__all__ = [
    "AntMaze",
    "AntMazeLayout",
    "DexterousHand",
    "ManipulationTask",
    "MazeLayout",
    "PointMaze",
    "Task",
    "TaskError",
    "is_custom_spec",
    "list_envs",
    "load_maze",
    "make_env",
    "register",
]
