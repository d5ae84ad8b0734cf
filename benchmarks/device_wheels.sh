#!/usr/bin/env bash
# Python 3.12 wheels of what the GPU machine's CUDA image lacks, into .whl/ (git-ignored), for
# `benchmarks/device_check.sh` there. Run here, in the repo root, before the device call; the
# versions are this checkout's .venv's (`make venv` first), so both machines run the same
# brax and MuJoCo. About 21 MB: the device tool carries up to 64 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
test -x "$PY" || { echo "error: no .venv here; run make venv first" >&2; exit 2; }
# brax, MJX and MuJoCo (the envs), what importing them pulls in that the image lacks, and the
# training CLI's logger. The image has jax 0.11, flax, optax, chex, orbax, scipy, matplotlib.
pkgs="brax jaxopt mujoco mujoco-core mujoco-mjx glfw trimesh tensorboardX"
pins=""
for p in $pkgs; do
  v=$("$PY" -m pip show "$p" 2>/dev/null | awk '/^Version:/ {print $2}')
  test -n "$v" || { echo "error: $p is not installed in .venv" >&2; exit 2; }
  pins="$pins $p==$v"
done
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d .whl $pins 2> >(grep -v "is ignored" >&2)
grep -qx "/.whl/" .gitignore || echo "warning: .whl/ is not git-ignored" >&2
ls .whl && du -sh .whl
