#!/usr/bin/env bash
# Does lr 1e-4 lose the fixed-camera fine-tune because the frames are small? `bench/sbi_finetune.sh`'s
# experiment on one SBI2015 scene with its frames enlarged FACTOR× (bilinear; masks nearest): the same
# 3 training pairs (PAIR_SEED, default 7) and the same held-out pairs, fine-tuned from `default` with
# the defaults (D) and with optim.lr=1e-4 (F), each scored on the held-out pairs as the sbi2015 reader
# gives them (170 ignored) at `--scales FACTOR` and its own chosen threshold; `default` zero-shot
# alongside. The enlarged pairs are written as a folder data set (A/, B/, label/), which has no
# ignore value: there a 170 pixel is trained as unchanged (both runs alike). About 6 min per fine-tune.
#   bash bench/sbi_finetune_enlarged.sh SCENE FACTOR [SBI2015_DIR] → runs/sbi-enlarged/SCENE-xFACTOR/
# e.g. bash bench/sbi_finetune_enlarged.sh CaVignal 3
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
SCENE=$1
FACTOR=$2
DATA=$(realpath "${3:-../shared/data/surveillance/sbi2015}")
BIN=.venv/bin
PAIR_SEED=${PAIR_SEED:-7}
OUT=${OUT:-runs/sbi-enlarged}/$SCENE-x$FACTOR
mkdir -p "$OUT"
$BIN/python - "$DATA" "$SCENE" "$FACTOR" "$OUT" "$PAIR_SEED" <<'EOF'
import sys
from pathlib import Path

import cv2
import numpy as np

from changeseg.data.datasets import open_dataset
from changeseg.io.images import write_png

root, scene, factor, out, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5])
train = open_dataset(f"sbi2015:{root}", scenes=[scene], pairs_per_scene=3, seed=seed)
drawn = open_dataset(f"sbi2015:{root}", scenes=[scene], pairs_per_scene=16)  # default's validation draw
trained = set(train.names)
test = [name for name in drawn.names if name not in trained]
(out / "test-names.txt").write_text("\n".join(test) + "\n", encoding="utf-8")
for index in range(len(train)):
    sample = train[index]
    stem = sample["name"].replace("/", "_")
    height, width = sample["mask"].shape
    size = (round(width * factor), round(height * factor))
    for sub, image in (("A", sample["reference"]), ("B", sample["comparison"])):
        write_png(out / "data" / sub / f"{stem}.png", cv2.resize(image, size, interpolation=cv2.INTER_LINEAR))
    mask = np.where(sample["mask"] == 1, 255, 0).astype(np.uint8)  # 255 (ignore) -> 0: see above
    write_png(out / "data" / "label" / f"{stem}.png", cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST))
print(f"{scene} x{factor:g}: {len(train)} training pairs, {len(test)} held out")
EOF
scored=(-d "sbi2015:$DATA" --data-option "scenes=[$SCENE]" --data-option pairs_per_scene=16
        --names "$OUT/test-names.txt")
for run in D F; do
  args=()
  [ "$run" = F ] && args=(optim.lr=1e-4)
  $BIN/changeseg finetune --from default -d "folder:$OUT/data" -o "$OUT/$run" --no-progress "${args[@]}"
  $BIN/changeseg evaluate -m "$OUT/$run/best" "${scored[@]}" --scales "$FACTOR" -o "$OUT/$run/eval" > /dev/null
done
$BIN/changeseg evaluate -m default "${scored[@]}" --scales "$FACTOR" -o "$OUT/zero-shot" > /dev/null
$BIN/python - "$OUT" <<'EOF'
import json
import sys
out = sys.argv[1]
for name in ("zero-shot", "D/eval", "F/eval"):
    report = json.load(open(f"{out}/{name}/metrics.json"))
    print(f"{name.split('/')[0]}: F1 {report['f1_at_threshold']:.3f} (t {report['threshold']:.2f})")
EOF
