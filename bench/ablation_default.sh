#!/usr/bin/env bash
# Ablation of the `default` recipe's synthetic changes: real object cut-outs (copy-paste) against
# random-shaped blobs, everything else equal. Both arms start from link 1 of the default chain
# (runs/chain/default-1, see tools/chain_default.sh; its shared a/d conv split into two, as in
# link 3), train for the same steps on the same data mix (link 3's, configs/default-link3.yaml), and differ
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
  $BIN/changeseg train -c configs/default-link3.yaml "${COMMON[@]}" --out "$OUT/copy-paste" >"$OUT/copy-paste.log" 2>&1
[ -d "$OUT/blobs/last" ] || [ -d "$OUT/blobs/best" ] || \
  $BIN/changeseg train -c configs/default-link3.yaml "${COMMON[@]}" "${BLOBS[@]}" --out "$OUT/blobs" >"$OUT/blobs.log" 2>&1

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
# arms: link 1, the two ablation arms, and (when present) the chain's links 2-6 and the
# shipped model (calibrated), also with test-time augmentation
ARMS=(link1 blobs copy-paste)
[ -d runs/default-link2/best ] && ARMS+=(link2)
[ -d runs/default-link3/best ] && ARMS+=(link3)
[ -d runs/default-link4/best ] && ARMS+=(link4)
[ -d runs/default-link5/best ] && ARMS+=(link5)
[ -d runs/default-link6-dwsep/best ] && ARMS+=(link6)
ARMS+=(shipped shipped-tta)
model_of() {
  case $1 in
    link1) echo runs/chain/default-1 ;;
    link2) echo runs/default-link2/best ;;
    link3) echo runs/default-link3/best ;;
    link4) echo runs/default-link4/best ;;
    link5) echo runs/default-link5/best ;;
    link6) echo runs/default-link6-dwsep/best ;;
    shipped|shipped-tta) echo default ;;
    *) if [ -d "$OUT/$1/best" ]; then echo "$OUT/$1/best"; else echo "$OUT/$1/last"; fi ;;
  esac
}
for arm in "${ARMS[@]}"; do
  model=$(model_of "$arm")
  extra=()
  [ "$arm" = shipped-tta ] && extra=(--tta)
  score "$arm" "$model" synval "folder:$OUT/synval-street" --data-option label_dir=label_typed \
    --data-option "class_names=[unchanged, appear, disappear, exchange]" "${extra[@]}"
  score "$arm" "$model" sbi-heldout "sbi2015:$DATA/surveillance/sbi2015" \
    --data-option "scenes=[CaVignal, HallAndMonitor]" --data-option pairs_per_scene=16 "${extra[@]}"
  score "$arm" "$model" tsunami "pcd:$DATA/tsunami" "${extra[@]}"
done
printf '%s\n' "${ARMS[@]}" > "$OUT/arms.txt"
$BIN/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("F1 = global pixel F1 at the model's own threshold / at the best threshold on that set (threshold-free).")
print("| arm | synthetic val (48, typed): F1 own / best | type IoU appear / disappear / exchange | SBI2015 held-out scenes (32): F1 own / best | TSUNAMI (3): F1 own / best |")
print("|---|---|---|---|---|")
for arm in (out / "arms.txt").read_text().split():
    row = [arm]
    for s in ("synval", "sbi-heldout", "tsunami"):
        m = json.loads((out / f"{arm}-{s}" / "metrics.json").read_text())
        g = m["protocols"]["global"]
        row.append(f"{g['f1']:.3f} (t {m['threshold']:.2f}) / {m['best_f1']:.3f} (t {m['best_threshold']:.2f})")
        if s == "synval":
            iou = g.get("per_class_iou", {})
            row.append(" / ".join(f"{iou.get(k, float('nan')):.3f}" for k in ("appear", "disappear", "exchange")))
    print("| " + " | ".join(row) + " |")
PY
