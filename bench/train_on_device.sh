#!/usr/bin/env bash
# Train the shipped models' device recipes (configs/device-MODEL.yaml) on a lent accelerator and
# put what comes back in $OUT/MODEL/: best/ and last/ weights (float16, 12 MB each) with their
# config.json, metrics.csv and summary.json (6 files; a device call returns at most 8).
#
# Here, before the call: pack the recipe's data next to the tree (`../shared/data` does not travel):
#   .venv/bin/python tools/device_bundle.py configs/device-pcb.yaml      # -> .device/data, checks 64 MiB
# The call (the `device` tool's run; one model per call, each recipe stops itself by max_time):
#   run(command="bash bench/train_on_device.sh pcb", carry=[".device"], timeout_s=540)
# Afterwards, here: calibrate, validate and package as for a CPU link (docs/training.md,
# "On a lent accelerator"). DEVICE_OVERRIDES adds recipe overrides (a CPU smoke run:
#   DEVICE_OVERRIDES="trainer.accelerator=cpu trainer.max_steps=2 data.num_workers=0" OUT=/tmp/o \
#     bash bench/train_on_device.sh pcb).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then echo "usage: bash bench/train_on_device.sh MODEL..." >&2; exit 2; fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
OUT=${OUT:-runs/device-out}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
export CHANGESEG_DATA=${CHANGESEG_DATA:-$PWD/.device/data}
export PYTHONUNBUFFERED=1
read -r -a EXTRA <<< "${DEVICE_OVERRIDES:-}"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
for model in "$@"; do
  recipe=configs/device-$model.yaml
  [ -f "$recipe" ] || { echo "error: no device recipe $recipe" >&2; exit 2; }
  run=${RUN_ROOT:-runs}/device-$model
  rm -rf "$run"
  start=$(date +%s)
  "$PY" -m changeseg.cli.main train -c "$recipe" "output.dir=$run" "${EXTRA[@]}"
  echo "$model: trained in $(( $(date +%s) - start )) s"
  mkdir -p "$OUT/$model"
  for part in best last; do
    cp "$run/$part/model.safetensors" "$OUT/$model/$part.safetensors"
    cp "$run/$part/config.json" "$OUT/$model/$part.config.json"
  done
  cp "$run"/logs/csv/version_0/metrics.csv "$run/summary.json" "$OUT/$model/"
done
ls -l "$OUT"/*
