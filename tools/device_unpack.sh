#!/usr/bin/env bash
# Turn what bench/train_on_device.sh brought back (FILES_AT/MODEL/{best,last}.safetensors,
# {best,last}.config.json, metrics.csv, summary.json) into model folders here:
# DEST/device-MODEL/{best,last}/ (model.safetensors + config.json), ready for
# tools/calibrate_model.py, changeseg evaluate and tools/package_model.py.
#   bash tools/device_unpack.sh /work/.device/files-at-path runs      # -> runs/device-pcb/best ...
set -euo pipefail
if [ $# -lt 1 ] || [ $# -gt 2 ]; then echo "usage: bash tools/device_unpack.sh FILES_AT [DEST]" >&2; exit 2; fi
src=$1 dest=${2:-runs}
found=0
for folder in "$src"/*/; do
  model=$(basename "$folder")
  [ -f "$folder/best.safetensors" ] || continue
  found=1
  for part in best last; do
    [ -f "$folder/$part.safetensors" ] || continue
    out=$dest/device-$model/$part
    mkdir -p "$out"
    cp "$folder/$part.safetensors" "$out/model.safetensors.tmp" && mv "$out/model.safetensors.tmp" "$out/model.safetensors"
    cp "$folder/$part.config.json" "$out/config.json.tmp" && mv "$out/config.json.tmp" "$out/config.json"
  done
  for extra in metrics.csv summary.json; do
    [ -f "$folder/$extra" ] && cp "$folder/$extra" "$dest/device-$model/"
  done
  echo "$model -> $dest/device-$model"
done
[ "$found" = 1 ] || { echo "error: no MODEL/best.safetensors under $src" >&2; exit 1; }
