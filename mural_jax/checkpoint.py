"""Checkpoints of the whole `TrainState` with orbax's CheckpointManager.

A checkpoint holds the training state (policy, critics, targets, every optimiser state,
temperature, classifier / meta-NML state, env states, success examples, RNG keys, counters),
the replay buffer as a separate item (optional), and the run's config. Orbax writes each step
to a temporary folder and renames it when complete, so a crash never leaves a half-written
checkpoint that looks valid; old steps are deleted only after a newer one is committed.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from mural_jax import config as config_lib
from mural_jax import replay as replay_lib

# Fields that may differ between a checkpoint's run and the run resuming it. They do not change
# what is computed, except that another device count resharding the state changes the order of
# float reductions (agreement to ~1e-6, not bit-identity) and, with relabel_rewards, the step
# of the switch to fresh rewards (Trainer.relabel_until) and, for MURAL, the support draws of
# relabelled rewards (each device draws them for its own block of rows).
RESUMABLE_CHANGES = ("steps", "out", "devices", "checkpoint_keep", "wandb", "wandb_project")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (another config, damaged, or missing)."""


def _config_fingerprint(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in RESUMABLE_CHANGES}


def _with_new_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """The saved config with options added since it was written at their defaults: a new
    option that defaults to the old behaviour does not orphan older checkpoints."""
    try:
        return config_lib.to_dict(config_lib.from_dict(config_lib.TrainConfig, saved))
    except (config_lib.ConfigError, TypeError, ValueError):  # removed or renamed keys
        return saved


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, prefix + key + ".")
        elif (list(va) if isinstance(va, tuple) else va) != (
            list(vb) if isinstance(vb, tuple) else vb
        ):
            out.append(f"{prefix}{key}: checkpoint {vb!r} vs run {va!r}")
    return out


def _is_empty(leaf) -> bool:
    return math.prod(leaf.shape) == 0


def _drop_empty(tree):
    """Zero-size arrays (e.g. an MJX state's unused fields) as None: orbax cannot save them."""
    return jax.tree.map(lambda x: None if _is_empty(x) else x, tree)


def _fill_empty(abstract, restored):
    """Put the zero-size leaves `_drop_empty` removed back, as zeros of their abstract shape."""
    leaves, treedef = jax.tree.flatten(abstract)
    kept = iter(jax.tree.leaves(restored))
    out = []
    for leaf in leaves:
        if _is_empty(leaf):
            zeros = jax.numpy.zeros(leaf.shape, leaf.dtype)
            sharding = getattr(leaf, "sharding", None)
            out.append(jax.device_put(zeros, sharding) if sharding is not None else zeros)
        else:
            out.append(next(kept))
    return treedef.unflatten(out)


@dataclasses.dataclass
class Checkpointer:
    """Saves training states (the loop calls `save` every `checkpoint_every` env steps) and
    keeps the last `keep`; saves are asynchronous."""

    directory: str
    keep: int = 3
    save_replay: bool = True
    use_async: bool = True

    def __post_init__(self):
        self.directory = os.path.abspath(self.directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=self.keep,
            enable_async_checkpointing=self.use_async,
            create=True,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def set_aside_after(self, step: int) -> list[str]:
        """Move the checkpoints newer than `step` out of the way (to ../checkpoints_superseded),
        so a run resumed from `step` can save its own; nothing is deleted. Returns the new
        paths."""
        aside = os.path.join(os.path.dirname(self.directory), "checkpoints_superseded")
        moved = []
        for s in [s for s in self.all_steps() if s > step]:
            dest = os.path.join(aside, str(s))
            n = 1
            while os.path.exists(dest):  # an earlier fallback set this step aside already
                dest, n = os.path.join(aside, f"{s}.{n}"), n + 1
            os.makedirs(aside, exist_ok=True)
            os.replace(os.path.join(self.directory, str(s)), dest)
            moved.append(dest)
        self.reload()
        return moved

    def reload(self) -> None:
        """Re-read the folder's steps (after another process moved some)."""
        self._manager.reload()

    def save(self, step: int, state, cfg) -> None:
        """Queue a save of `state` at `step` (returns once the device arrays are copied)."""
        items = {
            "state": ocp.args.StandardSave(_drop_empty(state.replace(replay=None))),
            "config": ocp.args.JsonSave(config_lib.to_dict(cfg)),
        }
        if self.save_replay:
            items["replay"] = ocp.args.StandardSave(state.replay)
        self._manager.save(step, args=ocp.args.Composite(**items))

    def restore(self, abstract_state, cfg, step: int | None = None):
        """Restore the state saved at `step` (default: latest) for a run with config `cfg`."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        path = os.path.join(self.directory, str(step))
        try:
            saved_cfg = self._manager.restore(
                step, args=ocp.args.Composite(config=ocp.args.JsonRestore())
            ).config
        except Exception as e:  # orbax raises several types for unreadable files
            raise CheckpointError(self._damaged(path, step, e)) from None
        diff = _diff(
            _config_fingerprint(config_lib.to_dict(cfg)),
            _config_fingerprint(_with_new_defaults(saved_cfg)),
        )
        if diff:
            raise CheckpointError(
                f"checkpoint {path} comes from another config; differences: " + "; ".join(diff)
            )
        abstract_rest = abstract_state.replace(replay=None)
        items = {"state": ocp.args.StandardRestore(_drop_empty(abstract_rest))}
        has_replay = os.path.isdir(os.path.join(path, "replay"))
        if saved_cfg.get("checkpoint_replay", True) and not has_replay:
            # Saved with its buffer, which is gone: resuming with an empty one would silently
            # change the run (a run saved without it resumes empty, by its own choice).
            raise CheckpointError(
                f"checkpoint {path} was saved with its replay buffer (checkpoint_replay=true) "
                f"but {os.path.join(path, 'replay')} is missing; restore that folder or resume "
                "from another checkpoint"
            )
        if has_replay:
            items["replay"] = ocp.args.StandardRestore(abstract_state.replay)
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:
            raise CheckpointError(self._damaged(path, step, e)) from None
        state = _fill_empty(abstract_rest, restored.state)
        if has_replay:
            replay = restored.replay
        else:  # saved without its buffer: resume with an empty one (not bit-identical)
            shapes = abstract_state.replay.data
            replay = replay_lib.init(
                abstract_state.replay.capacity, shapes.obs.shape[-1], shapes.action.shape[-1]
            )
        return state.replace(replay=jax.tree.map(jax.numpy.asarray, replay))

    def _damaged(self, path: str, step: int, error: Exception) -> str:
        older = [s for s in self.all_steps() if s < step]
        hint = (
            f"; older checkpoints kept: {older} (resume from one with --resume-step STEP)"
            if older
            else ""
        )
        return f"checkpoint {path} is damaged or unreadable: {error}{hint}"

    def wait(self) -> None:
        """Block until queued saves are committed (a finished run waits for its last save)."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()
