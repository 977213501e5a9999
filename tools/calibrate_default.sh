#!/usr/bin/env bash
# Calibrate a trained `default` run (runs/default/best by default) on its validation pairs and package it
# with its int8 recipe (tools/quantize_model.py --package).
# Validation pairs: the recipe's copy-paste synthetic pairs (seed 43, pairs 0-47: no link of the
# chain trained on them), the same objects on scikit-image's photos, the two held-out SBI2015
# scenes, and its held-out OSCD / AirChange / LEVIR / DSIFN / EGY pairs (`--names model-val`).
# DeepPCB is left out (the `pcb` model is for boards; its 200 boards would dominate the pixels).
# TSUNAMI is never used: it stays the zero-shot check.
#   bash tools/calibrate_default.sh [RUN_MODEL]        (default runs/default/best)
#   OUT_DIR=runs/calibrated/x NO_PACKAGE=1 bash tools/calibrate_default.sh runs/x/best   # calibrate only
# Every validation source weighs alike (--balance-sources, from link 7): by pixel count the two
# synthetic sets would set the threshold for the real domains.
#   CALIBRATE_ARGS= bash tools/calibrate_default.sh ...        # pixel-count weighting (links 3-6)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
DATA=$(realpath "${CHANGESEG_DATA:-../shared/data}")
MODEL=${1:-runs/default/best}
BIN=.venv/bin
CALIBRATE_ARGS=${CALIBRATE_ARGS---balance-sources}
synth_once() { # FOLDER synth-arguments...
  local folder=$1
  shift
  [ -f "$folder/meta.json" ] || $BIN/changeseg synth "$folder" -q "$@" >/dev/null
}
synth_once runs/eval/synval-street -n 48 --size 256 --seed 43 \
  -p "$DATA/photos/camvid" -p "$DATA/objects/coco128/images" \
  -O "$DATA/objects/coco128" -O "$DATA/objects/tuxpaint" -O "$DATA/photos/camvid"
synth_once runs/eval/synval-skimage -n 48 --size 256 --seed 43 \
  -O "$DATA/objects/coco128" -O "$DATA/objects/tuxpaint"
typed="class_names=[unchanged, appear, disappear, exchange]"
$BIN/python tools/calibrate_model.py "$MODEL" \
  folder:runs/eval/synval-street folder:runs/eval/synval-skimage \
  "sbi2015:$DATA/surveillance/sbi2015" \
  "oscd:$DATA/oscd" "airchange:$DATA/airchange" "folder:$DATA/levir_samples" \
  "folder:$DATA/dsifn_samples" "folder:$DATA/egy_ncc" \
  --names - --names - --names - --names model-val --names model-val --names model-val \
  --names model-val --names model-val \
  --data-option "1:label_dir=label_typed" --data-option "1:$typed" \
  --data-option "2:label_dir=label_typed" --data-option "2:$typed" \
  --data-option "3:scenes=[CaVignal, HallAndMonitor]" --data-option "3:pairs_per_scene=16" \
  --out "${OUT_DIR:-runs/calibrated/default}" $CALIBRATE_ARGS
if [ -z "${NO_PACKAGE:-}" ]; then
  $BIN/python tools/package_model.py "${OUT_DIR:-runs/calibrated/default}" default
  # the int8 recipe shipped beside the weights: ranges, fingerprint and verdicts (int8.json)
  CHANGESEG_DATA=$DATA $BIN/python tools/quantize_model.py default --package
fi
