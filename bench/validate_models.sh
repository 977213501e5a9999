#!/usr/bin/env bash
# Validation numbers of the three shipped models (docs/models.md, docs/benchmarks.md).
# Every score is on pairs the scored model never trained on: each model's own validation split
# (`--names model-val`), another model's (`--names model-val:MODEL`), generated synthetic pairs
# 0-47 of the training seed (the `default` recipe's synthetic validation pairs), whole SBI2015
# scenes `default` holds out, or TSUNAMI (never trained on).
#   bash bench/validate_models.sh [DATA_DIR [MODEL...]]   (default $CHANGESEG_DATA or ../shared/data;
#                                                          models: pcb aerial default, all by default)
# Reports land in runs/eval/<model>-<set>/ (metrics.json, metrics.md, per_image.csv, plots).
# A candidate not yet packaged (a calibrated run folder) stands in for `default` with
#   DEFAULT_MODEL=runs/calibrated/x OUT=runs/eval-x bash bench/validate_models.sh DATA default
# (AERIAL_MODEL and PCB_MODEL likewise for `aerial` and `pcb`). EVAL_ARGS are added to every
# `changeseg evaluate` call, e.g. EVAL_ARGS="--scales 1,2" OUT=runs/eval-scales12 for multi-scale.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
DATA=$(realpath "${1:-${CHANGESEG_DATA:-../shared/data}}")
shift || true
MODELS=${*:-pcb aerial default}
BIN=.venv/bin
OUT=${OUT:-runs/eval}
DEFAULT_MODEL=${DEFAULT_MODEL:-default}
AERIAL_MODEL=${AERIAL_MODEL:-aerial}
PCB_MODEL=${PCB_MODEL:-pcb}
read -r -a EXTRA <<<"${EVAL_ARGS:-}"
evaluate() { # MODEL NAME SPEC [options...]
  local model=$1 name=$2 spec=$3
  shift 3
  echo "== $model on $name"
  local path=$model
  case $model in
    default) path=$DEFAULT_MODEL ;;
    aerial) path=$AERIAL_MODEL ;;
    pcb) path=$PCB_MODEL ;;
  esac
  $BIN/changeseg evaluate -m "$path" -d "$spec" -o "$OUT/$model-$name" --worst 4 "$@" "${EXTRA[@]}" >/dev/null
  $BIN/python - "$OUT/$model-$name/metrics.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
g = m["protocols"]["global"]
line = (f"   {m['images']} pairs, threshold {m['threshold']:.2f}: global F1 {g['f1']:.3f} IoU {g['iou']:.3f} "
        f"P {g['precision']:.3f} R {g['recall']:.3f}; c3po F1 {m['protocols']['c3po']['f1']:.3f}; "
        f"best threshold {m['best_threshold']:.2f} -> F1 {m['best_f1']:.3f}")
if "boxes" in m["protocols"]:
    b = m["protocols"]["boxes"]
    line += f"; boxes F {b['f1']:.4f} (P {b['precision']:.4f} R {b['recall']:.4f}, AP {b['ap']:.4f})"
if g.get("miou") is not None and len(g.get("per_class_iou", {})) > 2:
    line += "; per-type IoU " + ", ".join(f"{k} {v:.3f}" for k, v in g["per_class_iou"].items() if v is not None)
print(line)
EOF
}

validate_pcb() { # its 100 held-out DeepPCB boards
  evaluate pcb deeppcb "deeppcb:$DATA/deeppcb" --names model-val
}

validate_aerial() { # its held-out OSCD cities, AirChange pairs, LEVIR-CD, DSIFN-CD and EGY crops
  for set in oscd airchange; do
    evaluate aerial "$set" "$set:$DATA/$set" --names model-val
  done
  for set in levir_samples dsifn_samples egy_ncc; do  # egy_ncc: from link 5 (earlier links: no val names)
    evaluate aerial "$set" "folder:$DATA/$set" --names model-val
  done
}

# default: its copy-paste synthetic validation pairs (typed labels: per-type IoU), the blob
# pairs of scikit-image's photos, its held-out SBI2015 scenes (against frame differencing on
# the same pairs), its own held-out EGY crops, and zero-shot on the pcb and aerial validation
# splits and on TSUNAMI
synth_once() { # FOLDER synth-arguments...
  local folder=$1
  shift
  [ -f "$folder/meta.json" ] || $BIN/changeseg synth "$folder" -q "$@" >/dev/null
}
validate_default() {
synth_once "$OUT/synval-street" -n 48 --size 256 --seed 43 \
  -p "$DATA/photos/camvid" -p "$DATA/objects/coco128/images" \
  -O "$DATA/objects/coco128" -O "$DATA/objects/tuxpaint" -O "$DATA/photos/camvid"
synth_once "$OUT/synval-skimage" -n 48 --size 256 --seed 43 \
  -O "$DATA/objects/coco128" -O "$DATA/objects/tuxpaint"
typed=(--data-option label_dir=label_typed --data-option "class_names=[unchanged, appear, disappear, exchange]")
evaluate default synthetic-street "folder:$OUT/synval-street" "${typed[@]}"
evaluate default synthetic-skimage "folder:$OUT/synval-skimage" "${typed[@]}"
evaluate default sbi2015-heldout "sbi2015:$DATA/surveillance/sbi2015" \
  --data-option "scenes=[CaVignal, HallAndMonitor]" --data-option pairs_per_scene=16
echo "== frame differencing on the same SBI2015 pairs"
$BIN/python bench/frame_difference.py "$DATA/surveillance/sbi2015" --scenes CaVignal,HallAndMonitor \
  --pairs-per-scene 16 | grep -E "^(scene|all)"
# the same pairs with a still object (foreground in both frames, the same pixels) not called change
evaluate default sbi2015-heldout-static "sbi2015:$DATA/surveillance/sbi2015" \
  --data-option "scenes=[CaVignal, HallAndMonitor]" --data-option pairs_per_scene=16 \
  --data-option both_foreground=differs
echo "== frame differencing on the same SBI2015 pairs, still objects not change"
$BIN/python bench/frame_difference.py "$DATA/surveillance/sbi2015" --scenes CaVignal,HallAndMonitor \
  --pairs-per-scene 16 --both-foreground differs | grep -E "^(scene|all)"
for set in oscd airchange; do
  evaluate default "$set-aerialval" "$set:$DATA/$set" --names model-val:aerial
done
for set in levir_samples dsifn_samples; do
  evaluate default "$set-aerialval" "folder:$DATA/$set" --names model-val:aerial
done
evaluate default egy_ncc "folder:$DATA/egy_ncc" --names model-val
evaluate default tsunami "pcd:$DATA/tsunami"
evaluate default deeppcb-pcbval "deeppcb:$DATA/deeppcb" --names model-val:pcb
}

for model in $MODELS; do
  "validate_$model"
done
