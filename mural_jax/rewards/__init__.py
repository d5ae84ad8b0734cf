"""Reward methods by name: `make_reward(config, task)`."""

from __future__ import annotations

from mural_jax.config import METHODS, TrainConfig
from mural_jax.envs.base import Task
from mural_jax.rewards.base import RewardMethod
from mural_jax.rewards.meta_nml import MetaNML
from mural_jax.rewards.oracle import OracleReward
from mural_jax.rewards.vice import Vice


def make_reward(config: TrainConfig, task: Task) -> RewardMethod:
    """The reward method `config.method` for `task`."""
    method = config.method
    if method in ("sparse", "dense"):
        return OracleReward(task, method)
    if method == "vice":
        return Vice(task, config.classifier)
    if method == "mural":
        return MetaNML(task, config.classifier, config.meta_nml)
    raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")


__all__ = ["RewardMethod", "make_reward"]
