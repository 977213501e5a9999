#!/usr/bin/env bash
# Extract link 1 of the `default` model's training chain (the weights shipped at commit b113ecb)
# into runs/chain/default-1, the `init_from` of configs/default.yaml (link 2).
set -euo pipefail
cd "$(dirname "$0")/.."
out=runs/chain/default-1
mkdir -p "$out"
git show b113ecb:src/changeseg/weights/default/model.safetensors > "$out/model.safetensors"
git show b113ecb:src/changeseg/weights/default/config.json > "$out/config.json"
echo "link 1 of default -> $out"
