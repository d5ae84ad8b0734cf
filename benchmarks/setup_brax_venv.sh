#!/usr/bin/env bash
# Build .venv-brax (repo root, git-ignored): brax 0.14.2 on jax 0.7.2, for benchmarks/brax_sac.py.
# brax 0.14.2's SAC trainer needs jax.device_put_replicated, which JAX 0.10 removed, so it
# cannot share the project's .venv. Idempotent: does nothing when the pinned set is installed.
#
#   bash benchmarks/setup_brax_venv.sh            # PYTHON=python3.11 to pick the interpreter
#   PYTHONPATH=. .venv-brax/bin/python benchmarks/brax_sac.py --steps 20000 --json OUT.json
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV=.venv-brax
# flax 0.12.0 is the last flax that accepts jax 0.7.x (0.12.1+ needs newer jax). The others are
# the versions pip resolves today against jax 0.7.2, pinned so the baseline stays reproducible.
PINS=(
  "jax==0.7.2"
  "jaxlib==0.7.2"
  "brax==0.14.2"
  "flax==0.12.0"
  "optax==0.2.8"
  "orbax-checkpoint==0.12.8"
  "mujoco==4.0.0"
  "mujoco-mjx==3.17.0"
  "scipy>=1.11"
)
STAMP="$VENV/.installed-$(printf '%s\n' "${PINS[@]}" | cksum | cut -d' ' -f1)"

if [ -f "$STAMP" ] && "$VENV/bin/python" -c "import brax.training.agents.sac.train" >/dev/null 2>&1; then
  echo "$VENV is up to date"
  exit 0
fi
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q "${PINS[@]}"
"$VENV/bin/python" - <<'EOF'
import brax
import jax
from brax.training.agents.sac import train  # noqa: F401

assert jax.__version__ == "0.7.2", jax.__version__
assert hasattr(jax, "device_put_replicated"), "this jax lacks device_put_replicated"
print(f"{__import__('sys').prefix}: jax {jax.__version__}, brax {brax.__version__}")
EOF
rm -f "$VENV"/.installed-*
touch "$STAMP"
