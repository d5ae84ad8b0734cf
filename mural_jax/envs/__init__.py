"""Task registry: `make_env(name)` builds any registered task; names map to factories (data)."""

from __future__ import annotations

from collections.abc import Callable

from mural_jax.envs.base import Task
from mural_jax.envs.point_maze import SPIRAL, ZIGZAG, MazeLayout, PointMaze

_REGISTRY: dict[str, Callable[..., Task]] = {
    "zigzag_maze": lambda **kw: PointMaze(ZIGZAG, **kw),
    "spiral_maze": lambda **kw: PointMaze(SPIRAL, **kw),
}


def list_envs() -> list[str]:
    """Names accepted by `make_env`."""
    return sorted(_REGISTRY)


def register(name: str, factory: Callable[..., Task]) -> None:
    """Add a task under `name` (a new maze is one `MazeLayout` and one call)."""
    if name in _REGISTRY:
        raise ValueError(f"task {name!r} is already registered")
    _REGISTRY[name] = factory


def make_env(name: str, **kwargs) -> Task:
    """Build a registered task by name; an unknown name lists the valid ones."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown env {name!r}; valid names: {', '.join(list_envs())}")
    return _REGISTRY[name](**kwargs)


__all__ = ["MazeLayout", "PointMaze", "Task", "list_envs", "make_env", "register"]
