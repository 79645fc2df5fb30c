#!/usr/bin/env bash
# Wheels a GPU machine without a package index lacks, and the CIFAR-10 archive, in one
# folder to carry with the checkout (git-ignored: /carry/). benchmarks/reproduce.py
# installs them from there (pip --no-index --no-deps --target) when one is missing.
#
#   benchmarks/prepare_offline.sh [DIR]          # DIR: default carry/ (repository root)
#
# Environment: DATA (the archive; default ../shared/data/cifar10-jpeg-train.tar.xz),
# PYTHON_VERSION (default 3.12), LIMIT_MIB (what may travel: default 64), PYTHON (whose
# pip downloads: default python3).
set -euo pipefail

# The wheels: benchmarks/carried.txt, one `name==version` a line (what the GPU image
# lacks; a test checks it against the code's imports). Fetched without dependencies:
# the image has them, and pulling them would bring a second numpy or jax.
mapfile -t PACKAGES < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' \
  "$(dirname "$0")/carried.txt")

cd "$(dirname "$0")/.."
DIR=${1:-carry}
DATA=${DATA:-../shared/data/cifar10-jpeg-train.tar.xz}
PYTHON_VERSION=${PYTHON_VERSION:-3.12}
LIMIT_MIB=${LIMIT_MIB:-64}
PIP=(${PYTHON:-python3} -m pip)

mkdir -p "$DIR"
"${PIP[@]}" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version "$PYTHON_VERSION" --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 \
  --dest "$DIR" "${PACKAGES[@]}"

if [[ -f "$DATA" ]]; then
  cp -f "$DATA" "$DIR/"
  echo "data: $DIR/$(basename "$DATA") ($(sha256sum "$DATA" | cut -c1-16)...)"
else
  echo "warning: no archive at $DATA (set DATA=...): reproduce.py will need --data" >&2
fi

ls -l "$DIR"
dir_bytes=$(du -sb "$DIR" | cut -f1)
tree_bytes=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -n1 | cut -f1)
total=$((dir_bytes + tree_bytes))
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "size: $DIR $(mib "$dir_bytes") + tracked files $(mib "$tree_bytes") = $(mib "$total")" \
     "of the ${LIMIT_MIB} MiB that may travel"
if (( total > LIMIT_MIB * 1048576 )); then
  echo "error: over the limit: drop the optional wheels (tensorboardX, zstandard), or" \
       "remove untracked files from the tree, before carrying $DIR" >&2
  exit 1
fi
