"""Typed, frozen run configuration, with validation and a command line generated from it.

Every field of every section is a flag: top-level fields as `--name`, sections as
`--section.name` (e.g. `--sac.learning-rate 1e-3`). Bad values raise `ConfigError` naming the
field, the value and what is allowed, before anything is compiled.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """An invalid configuration value (the message names the value and the allowed range)."""


def _check(name: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r} is invalid; allowed: {allowed}")


@dataclasses.dataclass(frozen=True)
class SACConfig:
    """Soft actor-critic (defaults: the original's, see ../shared/reference/mural.md)."""

    hidden: tuple[int, ...] = (256, 256)
    learning_rate: float = 3e-4
    tau: float = 5e-3
    gamma: float = 0.99
    batch_size: int = 256
    init_alpha: float = 1.0
    #: Entropy target; None means the usual automatic target -action_size.
    target_entropy: float | None = None
    reward_scale: float = 1.0
    #: Random Fourier features of the observation for the policy and both critics (0 = off,
    #: the paper: the networks see raw observations). With n > 0 each network first maps the
    #: observation to [sin, cos](2 pi B obs), B fixed at init with entries ~ N(0, scale^2), so an
    #: MLP on xy can represent values that jump across a thin wall (a departure; see README).
    fourier_features: int = 0
    #: Standard deviation of the frequencies in B, in cycles per observation unit.
    fourier_scale: float = 0.5
    #: Steps per critic target: sum of up to n discounted rewards of one env's consecutive
    #: transitions, then gamma^n V (1 = the paper's one-step target). Shorter at episode ends and
    #: at the newest transitions. Values reach a state n times fewer bootstraps from where they
    #: were earned (a departure; see README). The sum is uncorrected (no per-step entropy
    #: terms, no off-policy correction; V at the end is soft). Fresh learned rewards are
    #: recomputed for every step (stored ones with reward_at_collection).
    n_step: int = 1

    def validate(self) -> None:
        _check("sac.hidden", self.hidden, len(self.hidden) >= 1, "one or more widths >= 1")
        _check("sac.hidden", self.hidden, all(h >= 1 for h in self.hidden), "widths >= 1")
        _check("sac.learning_rate", self.learning_rate, 0 < self.learning_rate < 1, "(0, 1)")
        _check("sac.tau", self.tau, 0 < self.tau <= 1, "(0, 1]")
        _check("sac.gamma", self.gamma, 0 <= self.gamma < 1, "[0, 1)")
        _check("sac.batch_size", self.batch_size, self.batch_size >= 1, "integer >= 1")
        _check("sac.init_alpha", self.init_alpha, self.init_alpha > 0, "> 0")
        _check("sac.reward_scale", self.reward_scale, self.reward_scale > 0, "> 0")
        _check(
            "sac.fourier_features",
            self.fourier_features,
            isinstance(self.fourier_features, int) and self.fourier_features >= 0,
            "integer >= 0 (0 = raw observations)",
        )
        _check("sac.fourier_scale", self.fourier_scale, self.fourier_scale > 0, "> 0")
        _check(
            "sac.n_step",
            self.n_step,
            isinstance(self.n_step, int) and self.n_step >= 1,
            "integer >= 1 (1 = the one-step target)",
        )


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """The success classifier shared by VICE and meta-NML, and its retraining schedule."""

    #: Paper: 2048x2048 for mazes, push and ant; 512x512 for pick and door.
    hidden: tuple[int, ...] = (2048, 2048)
    #: Retrain (meta-train for MURAL) every this many env steps ...
    update_every: int = 1000
    #: ... for this many epochs; and this many epochs before RL starts.
    epochs_per_update: int = 1
    initial_epochs: int = 10
    #: Reference set: half replay states (label 0), half resampled success examples (label 1).
    reference_size: int = 2048
    #: VICE: plain supervised training, Adam, balanced batches.
    learning_rate: float = 1e-3
    batch_size: int = 256
    steps_per_epoch: int = 16
    #: Reward read from the classifier: probability or log-probability of success.
    reward_type: str = "prob"

    def validate(self) -> None:
        _check("classifier.hidden", self.hidden, all(h >= 1 for h in self.hidden), "widths >= 1")
        for name in ("update_every", "epochs_per_update", "steps_per_epoch"):
            v = getattr(self, name)
            _check(f"classifier.{name}", v, v >= 1, "integer >= 1")
        _check(
            "classifier.batch_size",
            self.batch_size,
            self.batch_size >= 2 and self.batch_size % 2 == 0,
            "even integer >= 2 (half success examples, half visited states)",
        )
        _check("classifier.initial_epochs", self.initial_epochs, self.initial_epochs >= 0, ">= 0")
        _check(
            "classifier.reference_size",
            self.reference_size,
            self.reference_size >= 4 and self.reference_size % 2 == 0,
            "even integer >= 4",
        )
        _check("classifier.learning_rate", self.learning_rate, 0 < self.learning_rate < 1, "(0,1)")
        _check(
            "classifier.reward_type",
            self.reward_type,
            self.reward_type in REWARD_TYPES,
            " | ".join(REWARD_TYPES),
        )


REWARD_TYPES = ("prob", "log_prob")


@dataclasses.dataclass(frozen=True)
class MetaNMLConfig:
    """meta-NML: MAML-trained initialisation adapted in one step per (query, label) task."""

    #: Points per task support set: the query plus support_size - 1 reference points.
    support_size: int = 64
    #: Kernel weight exp(-2.3 d / thresh): 0.1 at the threshold (mazes 0.5, in classifier space).
    dist_weight_thresh: float = 0.5
    #: The query's weight is query_point_weight / ceil(reference_size / support_size).
    query_point_weight: float = 1.0
    inner_lr: float = 0.01
    meta_lr: float = 1e-3
    #: Meta-training tasks per meta-epoch, and tasks averaged per Adam step (original: 1).
    tasks_per_epoch: int = 16
    tasks_per_step: int = 1
    #: Query points drawn from the replay buffer per meta-epoch; balanced = half success examples.
    num_query_points: int = 128
    balanced_queries: bool = False
    #: Departure from the original (default off): this fraction of the meta-training queries
    #: (taken from the replay half) are moved off the data by Gaussian noise of
    #: novel_query_scale (classifier space). The original meta-trains only on replay states and
    #: success examples, so one step's reach is learned only where the agent has been; exact
    #: CNML adapts to any query, novel ones included (docs/results.md, the spiral).
    novel_query_fraction: float = 0.0
    novel_query_scale: float = 1.0
    #: Departure from the original (default 0 = never): every this many meta-epochs, start the
    #: initialisation afresh and meta-train it classifier.initial_epochs on the current replay
    #: (those catch-up epochs are not counted in meta_epochs). A long-trained init drifts to
    #: near-certain logits that one step cannot move, and loses CNML's 0.5 on novel states; a
    #: fresh one keeps it (docs/results.md, the spiral).
    reinit_every: int = 0
    #: Second-order MAML gradient through the inner step (original: yes).
    second_order: bool = True
    #: Queries sharing one random support draw and one memory chunk at inference.
    inference_chunk: int = 256

    def validate(self) -> None:
        _check("meta_nml.support_size", self.support_size, self.support_size >= 2, "integer >= 2")
        for name in ("dist_weight_thresh", "query_point_weight", "inner_lr", "meta_lr"):
            v = getattr(self, name)
            _check(f"meta_nml.{name}", v, v > 0, "> 0")
        _check(
            "meta_nml.novel_query_fraction",
            self.novel_query_fraction,
            0.0 <= self.novel_query_fraction <= 1.0,
            "0 <= fraction <= 1",
        )
        _check(
            "meta_nml.novel_query_scale", self.novel_query_scale, self.novel_query_scale > 0, "> 0"
        )
        _check("meta_nml.reinit_every", self.reinit_every, self.reinit_every >= 0, "integer >= 0")
        for name in ("tasks_per_epoch", "tasks_per_step", "num_query_points", "inference_chunk"):
            v = getattr(self, name)
            _check(f"meta_nml.{name}", v, v >= 1, "integer >= 1")
        _check(
            "meta_nml.tasks_per_step",
            self.tasks_per_step,
            self.tasks_per_epoch % self.tasks_per_step == 0,
            f"a divisor of tasks_per_epoch={self.tasks_per_epoch}",
        )
        if self.balanced_queries:  # only the replay half of the queries can be moved
            replay_half = self.num_query_points - self.num_query_points // 2
            _check(
                "meta_nml.novel_query_fraction",
                self.novel_query_fraction,
                round(self.novel_query_fraction * self.num_query_points) <= replay_half,
                f"0 <= fraction <= {replay_half / self.num_query_points:g} with balanced_queries "
                f"(the novel queries come from the replay half of num_query_points="
                f"{self.num_query_points})",
            )


METHODS = ("sparse", "dense", "vice", "mural")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run. Env steps count transitions summed over all parallel envs."""

    #: A registered task, brax:NAME, maze:PATH (.json or ASCII .txt) or module.path:Attr.
    env: str = "zigzag_maze"
    #: Success states for a plain Brax env (.npy/.npz/.csv; (N, obs) or (N, k) with
    #: classifier_obs), and the observation columns the classifier sees ("START:STOP").
    success_examples: str | None = None
    classifier_obs: str | None = None
    method: str = "mural"
    seed: int = 0
    steps: int = 100_000
    num_envs: int = 16
    #: Gradient updates per env step; num_envs * updates_per_step updates per iteration.
    updates_per_step: float = 1.0
    random_steps: int = 1000
    #: The original: 1.5M transitions.
    replay_capacity: int = 1_500_000
    #: None: the task's own horizon (mazes 100).
    episode_length: int | None = None
    #: Env steps per compiled chunk: evaluate, log and report between chunks.
    eval_every: int = 4000
    eval_episodes: int = 64
    num_success_examples: int = 150
    #: Store the learned reward once at collection, as the original did (default: recompute
    #: on every sampled batch with the current classifier).
    reward_at_collection: bool = False
    #: With reward_at_collection: after every retraining of the reward, recompute the stored
    #: reward of every transition in the replay with the new classifier. Between retrainings the
    #: learned reward is a fixed function (same parameters, same reference pool), so every
    #: sampled reward is then current, as fresh ones are; only the random support draw of a
    #: transition is shared by its samplings within one retraining period. It costs one query
    #: per stored transition per retraining instead of one per sampled transition and step, so
    #: once the replay outgrows what fresh rewards query in a retraining period
    #: (`Trainer.relabel_until`), the run switches to fresh rewards on every sampled batch.
    relabel_rewards: bool = False
    #: Transitions per relabelling step (a loop over the filled part of the replay; split over
    #: the data-parallel devices, each relabelling the rows it holds).
    relabel_chunk: int = 8192
    #: With relabel_rewards: random support draws averaged into each stored reward (at
    #: collection and at every relabelling). A stored reward keeps its draw for a whole
    #: retraining period, where fresh rewards draw anew at every sampling; averaging lowers that
    #: draw's variance at this many times the queries (`Trainer.relabel_until` counts them).
    relabel_draws: int = 1
    out: str | None = None
    #: Save the whole training state every this many env steps (at the first chunk boundary at
    #: or after each multiple; 0: only at the end).
    checkpoint_every: int = 20_000
    checkpoint_keep: int = 3
    #: Include the replay buffer (without it a resumed run restarts with an empty buffer).
    checkpoint_replay: bool = True
    #: Also log to Weights & Biases (optional; needs `pip install wandb`; off by default).
    wandb: bool = False
    wandb_project: str = "mural_jax"
    #: Devices on the `data` mesh axis (0: all devices, across all hosts). Envs, replay buffer
    #: and each SAC/meta-NML batch are split over it; gradients are averaged over it.
    devices: int = 0
    sac: SACConfig = SACConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    meta_nml: MetaNMLConfig = MetaNMLConfig()

    @property
    def updates_per_iteration(self) -> int:
        return int(round(self.num_envs * self.updates_per_step))

    def validate(self) -> TrainConfig:
        from mural_jax.envs import ENV_FORMS, is_custom_spec, list_envs

        _check(
            "env",
            self.env,
            self.env in list_envs() or is_custom_spec(self.env),
            " | ".join(list_envs()) + f" (or {ENV_FORMS.split(', ', 1)[1]})",
        )
        if not is_custom_spec(self.env):
            for name in ("success_examples", "classifier_obs"):
                v = getattr(self, name)
                _check(name, v, v is None, "unset for registered tasks (they make their own)")
        _check("method", self.method, self.method in METHODS, " | ".join(METHODS))
        for name in ("steps", "num_envs", "replay_capacity", "eval_every", "eval_episodes"):
            v = getattr(self, name)
            _check(name, v, isinstance(v, int) and v >= 1, "integer >= 1")
        _check("random_steps", self.random_steps, self.random_steps >= 0, "integer >= 0")
        _check("seed", self.seed, 0 <= self.seed < 2**32, "integer in 0..2**32 - 1 (PRNG seeds)")
        for name in ("steps", "random_steps"):  # env steps are counted in int32 on device
            v = getattr(self, name)
            _check(
                name, v, v + self.num_envs < 2**31, f"integer < 2**31 - num_envs={self.num_envs}"
            )
        ups = self.updates_per_step
        _check("updates_per_step", ups, ups > 0, "> 0")
        _check(
            "updates_per_step",
            ups,
            abs(self.num_envs * ups - round(self.num_envs * ups)) < 1e-9,
            f"a value making num_envs * updates_per_step a whole number (num_envs={self.num_envs})",
        )
        _check(
            "eval_every",
            self.eval_every,
            self.eval_every % self.num_envs == 0,
            f"a multiple of num_envs={self.num_envs}",
        )
        _check(
            "steps",
            self.steps,
            self.steps % self.eval_every == 0,
            f"a multiple of eval_every={self.eval_every} (the compiled chunk size)",
        )
        _check(
            "replay_capacity",
            self.replay_capacity,
            self.replay_capacity >= max(self.num_envs, self.sac.batch_size),
            f">= max(num_envs, sac.batch_size) = {max(self.num_envs, self.sac.batch_size)}",
        )
        _check(
            "out",
            self.out,
            self.out is None or "://" not in self.out,
            "a local or mounted path (logs and metrics use plain file I/O; mount a bucket with "
            "gcsfuse rather than passing gs://...)",
        )
        _check("checkpoint_every", self.checkpoint_every, self.checkpoint_every >= 0, ">= 0")
        _check("checkpoint_keep", self.checkpoint_keep, self.checkpoint_keep >= 1, ">= 1")
        _check(
            "classifier.update_every",
            self.classifier.update_every,
            self.classifier.update_every >= self.num_envs,
            f">= num_envs={self.num_envs} (one retraining per iteration at most)",
        )
        if self.relabel_rewards:
            _check(
                "relabel_rewards",
                self.relabel_rewards,
                self.reward_at_collection,
                "False unless reward_at_collection=True (it refreshes stored rewards)",
            )
            _check(
                "method",
                self.method,
                self.method in ("vice", "mural"),
                "vice | mural with relabel_rewards=True (sparse and dense rewards never go stale)",
            )
        _check("relabel_chunk", self.relabel_chunk, self.relabel_chunk >= 1, "integer >= 1")
        _check("relabel_draws", self.relabel_draws, self.relabel_draws >= 1, "integer >= 1")
        if self.relabel_draws > 1:
            _check(
                "relabel_draws",
                self.relabel_draws,
                self.relabel_rewards,
                "1 unless relabel_rewards=True (it averages relabelled rewards' support draws)",
            )
            _check(
                "relabel_draws",
                self.relabel_draws,
                self.method == "mural",
                "1 unless method=mural (only meta-NML's reward depends on its support draw)",
            )
        _check("devices", self.devices, self.devices >= 0, "0 (all devices) or a count >= 1")
        if self.episode_length is not None:
            _check("episode_length", self.episode_length, self.episode_length >= 1, ">= 1")
        _check(
            "num_success_examples",
            self.num_success_examples,
            self.num_success_examples >= 1,
            "integer >= 1",
        )
        self.sac.validate()
        self.classifier.validate()
        self.meta_nml.validate()
        _check(
            "meta_nml.support_size",
            self.meta_nml.support_size,
            self.meta_nml.support_size - 1 <= self.classifier.reference_size,
            "<= classifier.reference_size + 1 = "
            f"{self.classifier.reference_size + 1} (the query plus reference points)",
        )
        return self


# -- Serialisation and the command line ---------------------------------------------------


def to_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _coerce(tp, value, name):
    """Convert a JSON/CLI value to the field type `tp`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        return _coerce(args[0], value, name)
    if origin is tuple:
        (elem, *_) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v for v in value.replace("x", ",").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(
                f"{name}={value!r} is invalid; allowed: a list of {elem.__name__} "
                f'(JSON [a, b] or "a,b")'
            )
        return tuple(_coerce(elem, v, name) for v in value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(
                f"{name}={value!r} is invalid; allowed: an object of {tp.__name__} fields "
                f"({', '.join(f.name for f in dataclasses.fields(tp))})"
            )
        return from_dict(tp, value, prefix=f"{name}.")
    try:
        if tp is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                return value.lower() in ("true", "1")
            return bool(value)
        if tp is int:
            if isinstance(value, bool):
                raise ValueError
            f = float(value)
            if not math.isfinite(f) or not f.is_integer():
                raise ValueError
            return int(f)
        if tp is float:
            f = float(value)
            if not math.isfinite(f):
                raise ValueError
            return f
        return tp(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{name}={value!r} is invalid; allowed: a value of type {tp.__name__}"
            + (" (finite)" if tp in (int, float) else "")
        ) from None


def from_dict(cls, data: dict[str, Any], prefix: str = ""):
    """Build a config dataclass from a (possibly partial) dict; unknown keys are errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {sorted(prefix + k for k in unknown)}; "
            f"valid keys: {', '.join(sorted(prefix + n for n in names))}"
        )
    kwargs = {k: _coerce(hints[k], v, prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def replace(cfg, overrides: dict[str, Any]):
    """Apply dotted overrides, e.g. {"sac.learning_rate": 1e-3}."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            nested[head] = value
    data = to_dict(cfg)
    for key, value in nested.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return from_dict(type(cfg), data)


def save_json(cfg, path) -> None:
    """Write the config atomically: a crash leaves the old file or the new one, never half."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(to_dict(cfg), f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())  # on disk before the rename makes it the file
    os.replace(tmp, path)


def load_json(cls, path):
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ConfigError(f"config file {path} is not valid JSON: {e}") from None
    return from_dict(cls, data)


EXPERIMENTS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments", "configs")


def list_experiments() -> list[str]:
    if not os.path.isdir(EXPERIMENTS_DIR):
        return []
    return sorted(f[:-5] for f in os.listdir(EXPERIMENTS_DIR) if f.endswith(".json"))


def load_experiment(name_or_path: str) -> TrainConfig:
    """A TrainConfig from experiments/configs/NAME.json or a JSON file path, validated."""
    path = name_or_path
    if not os.path.exists(path):
        path = os.path.join(EXPERIMENTS_DIR, name_or_path + ".json")
    if not os.path.exists(path):
        raise ConfigError(
            f"config={name_or_path!r} is neither a file nor a known experiment; "
            f"allowed: a JSON path or one of {', '.join(list_experiments())}"
        )
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ConfigError(f"config file {path} is not valid JSON: {e}") from None
    data.pop("_comment", None)
    return from_dict(TrainConfig, data).validate()


def add_arguments(parser: argparse.ArgumentParser, cls=TrainConfig, prefix: str = "") -> None:
    """One flag per field (sections dotted). Defaults are None: only given flags override."""
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        name = prefix + f.name
        if dataclasses.is_dataclass(hint):
            add_arguments(parser, hint, prefix=name + ".")
            continue
        flag = "--" + name.replace("_", "-")
        if hint is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction)
        else:
            parser.add_argument(flag, dest=name, default=None, metavar=name.split(".")[-1].upper())


def overrides_from_args(args: argparse.Namespace, cls=TrainConfig) -> dict[str, Any]:
    out = {}
    for key, value in vars(args).items():
        if value is not None and _is_field(cls, key):
            out[key] = value
    return out


def _is_field(cls, dotted: str) -> bool:
    head, _, rest = dotted.partition(".")
    hints = {f.name: typing.get_type_hints(cls)[f.name] for f in dataclasses.fields(cls)}
    if head not in hints:
        return False
    return _is_field(hints[head], rest) if rest else True
