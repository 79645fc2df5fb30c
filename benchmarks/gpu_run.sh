#!/usr/bin/env bash
# The one command of a lent GPU machine (benchmarks/README.md, "On a lent GPU"):
# the carried wheels, a preflight (versions, `import flax.nnx`, JAX on the GPU, else
# one line and stop), then every step of benchmarks.reproduce within T seconds, each
# step's JSON, summary.md and logs.tgz copied to $OUT as soon as they are written, so
# a command cut at the machine's limit still returns every finished step.
#
#   OUT=DIR [T=560] [RUN_DIR=runs/h200] bash benchmarks/gpu_run.sh
#   OUT=DIR SMOKE=1 [T=...] bash benchmarks/gpu_run.sh    # the same at tiny scale on
#                                                         # this machine's CPU
# What comes back: at most 8 files, flat (6 step JSONs, summary.md, logs.tgz).
set -uo pipefail
: "${OUT:?set OUT to the folder whose files come back}"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
T=${T:-560}
PYTHON=${PYTHON:-python3}
if [[ -n ${SMOKE:-} ]]; then
  args=(--smoke --platform=cpu)
  RUN_DIR=${RUN_DIR:-runs/smoke}
else
  args=(--platform=gpu)
  RUN_DIR=${RUN_DIR:-runs/h200}
  nvidia-smi -L 2>/dev/null || echo "gpu_run: no nvidia-smi"
fi
mkdir -p "$OUT" "$RUN_DIR"
"$PYTHON" -m benchmarks.reproduce "${args[@]}" --out="$RUN_DIR" --mirror="$OUT" \
  --budget_seconds=$((T - SECONDS)) >"$RUN_DIR/reproduce.log" 2>&1
rc=$?
grep -E '^(reproduce: (step|installed|could not|preflight)|error)' "$RUN_DIR/reproduce.log"
echo "gpu_run: reproduce exit $rc after ${SECONDS}s; back in \$OUT: $(ls "$OUT" | tr '\n' ' ')"
[[ -f $RUN_DIR/summary.md ]] && sed -n '/^| Step/,/^$/p' "$RUN_DIR/summary.md"
exit $rc
