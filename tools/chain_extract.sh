#!/usr/bin/env bash
# Extract a shipped model's weights as committed at COMMIT into a run folder, so a later link of
# its training chain can start from them (`model.init_from`). MODEL is a packaged name
# (src/changeseg/weights/MODEL) or, with a slash, a model folder's path in the repository.
#   bash tools/chain_extract.sh aerial e292038 runs/chain/aerial-2
#   bash tools/chain_extract.sh chain/default-f64-link10 1e5f1c3 runs/chain/default-10
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 3 ]; then echo "usage: bash tools/chain_extract.sh MODEL COMMIT OUT" >&2; exit 2; fi
name=$1 commit=$2 out=$3
case $name in */*) folder=$name ;; *) folder=src/changeseg/weights/$name ;; esac
mkdir -p "$out"
for file in model.safetensors config.json; do
  git show "$commit:$folder/$file" > "$out/$file.tmp"
  mv "$out/$file.tmp" "$out/$file"
done
echo "$name at $commit -> $out"
