#!/usr/bin/env bash
# A fixed-seed tiny run trained, exported and compressed, then fingerprinted:
# two versions of the code giving equal digests behave the same on it.
#   bash benchmarks/behaviour_check.sh OUT_DIR     (from the repository root)
set -euo pipefail
out=${1:?usage: behaviour_check.sh OUT_DIR}
python=${PYTHON:-python}
work="$out/run"
rm -rf "$work" && mkdir -p "$out"
"$python" main.py --config=configs/tiny.py --workdir="$work" --config.num_epochs=2
"$python" main.py --mode=export --workdir="$work" --config.data.eval_split=validation
"$python" main.py --mode=compress --workdir="$work" --config.data.eval_split=validation \
  --config.compress.stages=pruned,shared,qat_int4 --config.compress.pruned.epochs=2 \
  --config.compress.pruned.sparsity=0.5 --config.compress.shared.epochs=1 \
  --config.compress.qat_int4.epochs=1
"$python" -m benchmarks.fingerprint "$work" --out="$out/fingerprint.json" >/dev/null
echo "wrote $out/fingerprint.json"
