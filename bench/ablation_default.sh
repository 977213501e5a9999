#!/usr/bin/env bash
# Ablation of the `default` recipe's synthetic changes: real object cut-outs (copy-paste) against
# random-shaped blobs, everything else equal. Both arms start from link 1 of the default chain
# (runs/chain/default-1, see tools/chain_default.sh; its shared a/d conv split into two, as in
# link 3), train for the same steps on the same data mix (configs/default.yaml), and differ
# only in `p_real_object` / `p_inpaint` of the synthetic sources (0 = blobs only). Each arm is scored on pairs none of them trained on: the recipe's
# copy-paste synthetic validation pairs (typed), its held-out SBI2015 scenes, and TSUNAMI.
#   bash bench/ablation_default.sh [STEPS_EPOCHS]       (default 2 epochs ≈ 270 steps per arm)
# Reports: runs/ablation/<arm>-<set>/metrics.json; a summary table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
DATA=$(realpath "${CHANGESEG_DATA:-../shared/data}")
EPOCHS=${1:-2}
BIN=.venv/bin
OUT=runs/ablation
mkdir -p "$OUT"
[ -f runs/chain/default-1/model.safetensors ] || bash tools/chain_default.sh
COMMON=(model.init_from=runs/chain/default-1 trainer.max_epochs="$EPOCHS"
        trainer.val_every_n_epochs=1000 optim.warmup_steps=20)
BLOBS=(data.train.0.options.p_real_object=0 data.train.0.options.p_inpaint=0
       data.train.1.options.p_real_object=0)
[ -d "$OUT/copy-paste/last" ] || [ -d "$OUT/copy-paste/best" ] || \
  $BIN/changeseg train -c configs/default.yaml "${COMMON[@]}" --out "$OUT/copy-paste" >"$OUT/copy-paste.log" 2>&1
[ -d "$OUT/blobs/last" ] || [ -d "$OUT/blobs/best" ] || \
  $BIN/changeseg train -c configs/default.yaml "${COMMON[@]}" "${BLOBS[@]}" --out "$OUT/blobs" >"$OUT/blobs.log" 2>&1

# the recipe's copy-paste synthetic validation pairs (source 0, seed 43, pairs 0-47)
if [ ! -f "$OUT/synval-street/meta.json" ]; then
  $BIN/changeseg synth "$OUT/synval-street" -n 48 --size 256 --seed 43 -q \
    -p "$DATA/photos/camvid" -p "$DATA/objects/coco128/images" \
    -O "$DATA/objects/coco128" -O "$DATA/objects/tuxpaint" -O "$DATA/photos/camvid" >/dev/null
fi
score() { # ARM MODEL SET SPEC [options...]
  local arm=$1 model=$2 set=$3 spec=$4
  shift 4
  $BIN/changeseg evaluate -m "$model" -d "$spec" -o "$OUT/$arm-$set" --worst 0 "$@" >/dev/null
}
for arm in link1 blobs copy-paste; do
  if [ "$arm" = link1 ]; then model=runs/chain/default-1; else
    model="$OUT/$arm/best"; [ -d "$model" ] || model="$OUT/$arm/last"; fi
  score "$arm" "$model" synval "folder:$OUT/synval-street" --data-option label_dir=label_typed \
    --data-option "class_names=[unchanged, appear, disappear, exchange]"
  score "$arm" "$model" sbi-heldout "sbi2015:$DATA/surveillance/sbi2015" \
    --data-option "scenes=[CaVignal, HallAndMonitor]" --data-option pairs_per_scene=16
  score "$arm" "$model" tsunami "pcd:$DATA/tsunami"
done
$BIN/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| arm | synthetic val: best F1 | appear / disappear / exchange IoU | SBI2015 held-out scenes: best F1 | TSUNAMI: best F1 |")
print("|---|---|---|---|---|")
for arm in ("link1", "blobs", "copy-paste"):
    row = [arm]
    for s in ("synval", "sbi-heldout", "tsunami"):
        m = json.loads((out / f"{arm}-{s}" / "metrics.json").read_text())
        row.append(f"{m['best_f1']:.3f} (t {m['best_threshold']:.2f})")
        if s == "synval":
            iou = m["protocols"]["global"].get("per_class_iou", {})
            row.append(" / ".join(f"{iou.get(k, float('nan')):.3f}" for k in ("appear", "disappear", "exchange")))
    print("| " + " | ".join(row) + " |")
PY
