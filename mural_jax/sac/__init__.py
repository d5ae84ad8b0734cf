"""Soft actor-critic: networks, losses and the update step as pure functions."""

from mural_jax.sac.agent import SAC, SACState

__all__ = ["SAC", "SACState"]
