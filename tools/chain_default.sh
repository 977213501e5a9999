#!/usr/bin/env bash
# Extract link 1 of the `default` model's training chain (the weights shipped at commit b113ecb)
# into runs/chain/default-1, the `init_from` of configs/default-link2.yaml.
set -euo pipefail
exec bash "$(dirname "$0")/chain_extract.sh" default b113ecb runs/chain/default-1
