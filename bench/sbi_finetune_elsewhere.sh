#!/usr/bin/env bash
# What the fixed-camera fine-tunes of a finished bench/sbi_finetune.sh folder keep elsewhere: each
# OUT/SCENE/best scored at its own threshold on the other scenes' 16 pairs of default's validation
# draw and on the TSUNAMI pairs, which it never saw; `default` zero-shot on the same pairs first.
# Evaluation only, about 20 s per score on the 2-core CPU.
#   bash bench/sbi_finetune_elsewhere.sh OUT [SBI2015_DIR] [TSUNAMI_DIR]    → OUT/SCENE/eval-on-*/
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
OUT=${1:?usage: bench/sbi_finetune_elsewhere.sh OUT [SBI2015_DIR] [TSUNAMI_DIR]}
SBI=$(realpath "${2:-../shared/data/surveillance/sbi2015}")
TSUNAMI=$(realpath "${3:-../shared/data/tsunami}")
SCENES=()
for best in "$OUT"/*/best; do
  [ -d "$best" ] && SCENES+=("$(basename "$(dirname "$best")")")
done
if [ ${#SCENES[@]} = 0 ]; then echo "error: no fine-tuned scene (OUT/SCENE/best) in $OUT" >&2; exit 1; fi
f1() {  # MODEL REPORT_DIR SCENE|tsunami: the global F1 at the model's own threshold
  local model=$1 report=$2 where=$3
  local data=(-d "pcd:$TSUNAMI")
  [ "$where" = tsunami ] || data=(-d "sbi2015:$SBI" --data-option "scenes=[$where]" --data-option pairs_per_scene=16)
  rm -rf "$report"  # a failed evaluation must not leave an earlier report to be read
  .venv/bin/changeseg evaluate -m "$model" "${data[@]}" -o "$report" > /dev/null
  .venv/bin/python -c "import json, sys; print(f\"{json.load(open(sys.argv[1]))['f1_at_threshold']:.3f}\")" "$report/metrics.json"
}
scores() {  # LABEL MODEL REPORT_PREFIX [SCENE to skip]: one line of scores on the other scenes and TSUNAMI
  local line="$1:" model=$2 prefix=$3 skip=${4:-} other score
  for other in "${SCENES[@]}" tsunami; do
    [ "$other" = "$skip" ] && continue
    score=$(f1 "$model" "$prefix-$other" "$other")
    line+=" $other $score"
  done
  echo "$line"
}
scores "zero-shot default" default "$OUT/zero-shot-on"
for scene in "${SCENES[@]}"; do
  scores "fine-tuned on $scene" "$OUT/$scene/best" "$OUT/$scene/eval-on" "$scene"
done
