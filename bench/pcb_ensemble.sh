#!/usr/bin/env bash
# `pcb` as an output ensemble of independent runs (docs/models.md, `pcb`, "Link 9").
#   OMP_WAIT_POLICY=PASSIVE changeseg train -c configs/pcb.yaml seed=43 output.dir=runs/pcb-seed43
#   bash bench/pcb_ensemble.sh [MEMBER ...]   (default: runs/pcb-seed43/last; data from $CHANGESEG_DATA,
#                                               default ../shared/data)
# 1. joins BASE, `pcb` link 2 (the single network shipped until 2026-12-07; its folded calibration
#    undone; extracted from git into runs/chain/pcb-2 when missing) and the MEMBERs: runs/pcb-ensemble
#    (`pcb` link 9 is this with MEMBER runs/pcb-seed43/last);
# 2. sweeps the box F-score over thresholds x minimum areas x splitting on pcb's 100 validation
#    boards, one view (tools/sweep_box_threshold.py, as every pcb link);
# 3. calibrates the ensemble keeping the sweep's best threshold (as pcb link 2):
#    runs/calibrated/pcb-ensemble;
# 4. scores that with `changeseg evaluate` (box F, AP): runs/eval-pcb-ensemble;
# 5. sweeps the last MEMBER alone on the same grid (the new run's own score, for the seed spread).
# Logs: runs/pcb-ensemble-*.txt. OUT_SUFFIX names another set of folders (e.g. a third seed).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
MEMBERS=("${@:-runs/pcb-seed43/last}")
MEMBER=${MEMBERS[-1]}
DATA=$(realpath "${CHANGESEG_DATA:-../shared/data}")
BIN=.venv/bin
NAME=pcb-ensemble${OUT_SUFFIX:-}
BASE=${BASE:-runs/chain/pcb-2}
GRID=(--thresholds 0.5,0.7,0.8,0.9,0.95,0.97,0.98,0.985,0.99,0.995,0.998
      --min-areas 100,150,200,250,300 --split-depths 0,1 --split-covers 0.95)
SPEC=deeppcb:$DATA/deeppcb

[ -e "$BASE/config.json" ] || bash tools/chain_extract.sh pcb e9e7800 "$BASE"
$BIN/python tools/average_weights.py --ensemble "runs/$NAME" "$BASE" "${MEMBERS[@]}"
$BIN/python tools/sweep_box_threshold.py "runs/$NAME" "$SPEC" "${GRID[@]}" | tee "runs/$NAME-sweep.txt"
best() { tail -n 1 "runs/$NAME-sweep.txt" | $BIN/python -c "import json,sys; print(json.load(sys.stdin)['best']['$1'])"; }
THRESHOLD=$(best threshold)
MIN_AREA=$(best min_area)
echo "best: threshold $THRESHOLD, min_area $MIN_AREA, split_depth $(best split_depth), box F $(best box_f1)"
$BIN/python tools/calibrate_model.py "runs/$NAME" "$SPEC" --names model-val --keep-threshold \
  --decision-threshold "$THRESHOLD" --out "runs/calibrated/$NAME" | tee "runs/$NAME-calibrate.txt"
$BIN/changeseg evaluate -m "runs/calibrated/$NAME" -d "$SPEC" --names model-val \
  --box-option "min_area=$MIN_AREA" --box-option "split_depth=$(best split_depth)" \
  --box-option "split_cover=$(best split_cover)" -o "runs/eval-$NAME" | tee "runs/$NAME-evaluate.txt"
$BIN/python tools/sweep_box_threshold.py "$MEMBER" "$SPEC" --names model-val:pcb "${GRID[@]}" \
  | tee "runs/$NAME-member-sweep.txt"
