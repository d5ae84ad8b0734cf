#!/usr/bin/env bash
# Every GPU check in one call of the device tool (a lent H100 or H200; ~15 minutes of device
# time a session, the machine's start included), so a session that is lent one spends it
# measuring, not setting up:
#
#   bash benchmarks/device_wheels.sh                       # here: brax/MuJoCo wheels into .whl/
#   run(command="bash benchmarks/device_check.sh", carry=[".whl"], timeout_s=560)
#
# Writes to $OUT (what the tool brings back; at most 8 files): the GPU and versions, the
# meta-NML exactness tests at float32 ("highest" matmul precision: a GPU's default may use
# TF32), and `benchmarks.run --only meta_nml,overhead,envs` at the default precision and the
# meta-NML part again at "highest", with both runs' latest.json. Record the numbers in
# docs/benchmarks.md here (the machine is bare again after the call). BENCH_ONLY, BENCH_ARGS
# and SKIP_TESTS=1 narrow it (e.g. for a dry run on a CPU).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
PY=${PY:-python3}
{
  date -u
  command -v nvidia-smi >/dev/null && nvidia-smi -L
  "$PY" -c "import jax, brax, mujoco; from mujoco import mjx; print('jax', jax.__version__, \
'brax', brax.__version__, 'mujoco', mujoco.__version__, jax.devices())" 2>&1 | grep -v warp
} | tee "$OUT/machine.txt"
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  # The exactness tests (fast = naive CNML to 1e-5, chunked inference, the MAML gradient).
  JAX_DEFAULT_MATMUL_PRECISION=highest timeout 150 "$PY" -m pytest -q -p no:cacheprovider \
    tests/test_meta_nml.py -k "naive or chunk" > "$OUT/test_meta_nml.log" 2>&1
  echo "meta-NML tests (float32, highest precision): rc $? ($(tail -n 1 "$OUT/test_meta_nml.log"))"
fi
ONLY=${BENCH_ONLY:-meta_nml,overhead,envs}
# shellcheck disable=SC2086  # BENCH_ARGS is a list of flags
timeout 330 "$PY" -m benchmarks.run --only "$ONLY" ${BENCH_ARGS:-} 2>&1 | grep -v warp \
  | tee "$OUT/bench_default_precision.log"
cp benchmarks/latest.json "$OUT/latest_default_precision.json"
if [[ ",$ONLY," == *,meta_nml,* ]]; then
  # shellcheck disable=SC2086
  JAX_DEFAULT_MATMUL_PRECISION=highest timeout 120 "$PY" -m benchmarks.run --only meta_nml \
    ${BENCH_ARGS:-} 2>&1 | grep -v warp | tee "$OUT/bench_highest_precision.log"
  cp benchmarks/latest.json "$OUT/latest_highest_precision.json"
fi
ls -la "$OUT"
