"""Host-side outputs between compiled chunks: run folder, config.json, metrics.csv, progress."""

from __future__ import annotations

import csv
import json
import os
import platform
import sys
import time
from importlib import metadata

from mural_jax import config as config_lib
from mural_jax.config import TrainConfig


def prepare_run_dir(cfg: TrainConfig) -> str:
    """Create the run folder and write config.json; never reuse a folder holding a run."""
    out = cfg.out or os.path.join(
        "runs", f"{cfg.env}-{cfg.method}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    if os.path.exists(os.path.join(out, "config.json")):
        raise FileExistsError(
            f"{out} already holds a run (config.json exists); choose a new --out "
            "or remove the old folder"
        )
    os.makedirs(out, exist_ok=True)
    config_lib.save_json(cfg, os.path.join(out, "config.json"))
    return out


#: Packages whose versions change a run's numbers (or its ability to load a checkpoint).
_VERSIONED = ("jax", "jaxlib", "flax", "optax", "chex", "orbax-checkpoint", "brax", "numpy")


def _cpuinfo(field: str) -> str | None:
    """The first `field` line of Linux's /proc/cpuinfo, or None elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.split(":", 1)[0].strip() == field:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def processor() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what `platform` knows."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def simd_features() -> list[str]:
    """The CPU's vector-instruction flags (avx*, fma, amx*): what XLA's CPU code depends on.
    A VM's model name is often generic ("Intel(R) Xeon(R) Processor"); these are not."""
    flags = (_cpuinfo("flags") or "").split()
    return sorted(f for f in flags if f.startswith(("avx", "fma", "amx")))


def machine_info() -> dict:
    """Where a run's numbers came from: date, devices, processor and package versions.

    XLA compiles for the processor it runs on, so one config and seed can give different
    float-level results (and, in RL, different outcomes) on another machine; this is what
    tells two such runs apart.
    """
    import jax

    dev = jax.devices()[0]
    versions = {}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": platform.node(),
        "backend": dev.platform,
        "device_kind": dev.device_kind,
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "processor": processor(),
        "simd": simd_features(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "packages": versions,
    }


def record_machine(out: str) -> dict:
    """Append this machine's `machine_info()` to `out`/machines.jsonl (one line per start or
    resume of the run in `out`) and return it."""
    info = machine_info()
    with open(os.path.join(out, "machines.jsonl"), "a") as f:
        f.write(json.dumps(info) + "\n")
    return info


class MetricsLogger:
    """One row per chunk to metrics.csv (columns fixed by the first row) and TensorBoard."""

    def __init__(self, out: str, resume_at: int | None = None, wandb_run=None):
        """`resume_at`: continue an existing file, dropping rows past that env step."""
        self.path = os.path.join(out, "metrics.csv")
        self._wandb = wandb_run
        self._file = None
        self._writer = None
        self._columns = None
        self._tb = None
        self._tb_dir = os.path.join(out, "tensorboard")
        self._resume_at = resume_at
        if resume_at is not None and os.path.exists(self.path):
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                self._columns = reader.fieldnames
                rows = [r for r in reader if int(float(r["env_steps"])) <= resume_at]
            tmp = self.path + ".tmp"  # replaced whole: a kill here keeps the old file
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self._columns)
                writer.writeheader()
                writer.writerows(rows)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)

    def write(self, metrics: dict[str, float]) -> None:
        if self._writer is None:
            columns = self._columns or ["env_steps"] + sorted(
                k for k in metrics if k != "env_steps"
            )
            self._file = open(self.path, "a", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=columns, extrasaction="ignore")
            if self._columns is None:
                self._writer.writeheader()
        self._writer.writerow({k: _fmt(v) for k, v in metrics.items()})
        self._file.flush()
        if self._tb is None:
            from tensorboardX import SummaryWriter

            # On resume, TensorBoard drops the events that the killed run logged past the
            # checkpoint (they are recomputed), as metrics.csv drops its rows.
            purge = None if self._resume_at is None else self._resume_at + 1
            self._tb = SummaryWriter(self._tb_dir, purge_step=purge)
        step = int(metrics["env_steps"])
        for k, v in metrics.items():
            if k != "env_steps":
                self._tb.add_scalar(k, v, step)
        self._tb.flush()
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in metrics.items() if k != "env_steps"}, step=step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def start_wandb(cfg: TrainConfig, out: str):
    """A wandb run for `cfg`, or a clear error when wandb is not installed."""
    try:
        import wandb
    except ImportError:
        raise config_lib.ConfigError(
            "wandb=True is invalid here: the wandb package is not installed "
            "(pip install wandb), or drop --wandb"
        ) from None
    return wandb.init(project=cfg.wandb_project, config=config_lib.to_dict(cfg), dir=out,
                      name=os.path.basename(os.path.normpath(out)))  # fmt: skip


class NullLogger:
    """What processes other than 0 log: nothing."""

    def write(self, metrics: dict[str, float]) -> None:
        pass

    def close(self) -> None:
        pass


def _fmt(v):
    if isinstance(v, float):
        return int(v) if v.is_integer() and abs(v) < 2**53 else f"{v:.6g}"
    return v


def progress_line(m: dict[str, float], total: int, eta_s: float) -> str:
    steps = int(m["env_steps"])
    return (
        f"[{steps:>9d}/{total}] {m['train/steps_per_second']:8.0f} steps/s  "
        f"eval success {m['eval/success_rate']:.2f}  final dist {m['eval/final_distance']:.2f}  "
        f"critic {m['train/critic_loss']:.3g}  alpha {m['train/alpha']:.3g}  "
        f"ETA {_hms(eta_s)}"
    )


def _hms(s: float) -> str:
    s = int(max(s, 0))
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"
