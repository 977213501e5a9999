#!/usr/bin/env bash
# Few-pair fine-tuning on a fixed camera: for each of SBI2015's two scenes that `default` never
# trained on (CaVignal, HallAndMonitor), fine-tune `default` on 3 labelled frame pairs of the scene
# (`changeseg finetune` with its own defaults: all 3 trained on, the threshold chosen on them) and
# score the scene's other pairs (the 16 of default's validation draw, less any trained on) at the
# fine-tuned model's threshold and at the starting model's; also the starting model zero-shot on
# the same pairs. Prints one line per scene. About 8 min per fine-tune on the 2-core CPU.
#   bash bench/sbi_finetune.sh [SBI2015_DIR]    (default ../shared/data/surveillance/sbi2015) → runs/sbi-finetune/
# FINETUNE_ARGS adds `changeseg finetune` options and overrides, OUT moves the runs, PAIR_SEED
# draws other training pairs (default 7), SCENES picks the scenes, FROM the starting model or preset
# (default `default`; the zero-shot column stays `default`'s), e.g.
#   FINETUNE_ARGS="optim.lr=3e-4" OUT=runs/sbi-finetune-lr3e4 bash bench/sbi_finetune.sh
#   FINETUNE_ARGS="seed=43" PAIR_SEED=8 OUT=runs/sbi-finetune-p8 bash bench/sbi_finetune.sh
#   FINETUNE_ARGS="--scale 2" SCENES="CaVignal Board" OUT=runs/sbi-scale/x2 bash bench/sbi_finetune.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
DATA=$(realpath "${1:-../shared/data/surveillance/sbi2015}")
BIN=.venv/bin
OUT=${OUT:-runs/sbi-finetune}
SCENES=${SCENES:-CaVignal HallAndMonitor}
PAIR_SEED=${PAIR_SEED:-7}
FROM=${FROM:-default}
read -r -a EXTRA <<< "${FINETUNE_ARGS:-}"
KEPT=$($BIN/python -c "from changeseg.io.checkpoints import model_folder, read_config; print(read_config(model_folder('default')).threshold)")
for scene in $SCENES; do
  run=$OUT/$scene
  # 3 pairs of the scene drawn with PAIR_SEED (default's validation draw uses seed 0)
  $BIN/changeseg finetune --from "$FROM" -d "sbi2015:$DATA" -o "$run" --no-progress \
    "data.train.0.options={scenes: [$scene], pairs_per_scene: 3, seed: $PAIR_SEED}" "${EXTRA[@]}"
  $BIN/python - "$run" "$DATA" "$scene" <<'EOF'
import json
import sys
from changeseg.data.datasets import open_dataset
run, root, scene = sys.argv[1:]
trained = {name for source in json.load(open(f"{run}/summary.json"))["split"]["sources"]
           for name in source["train_names"]}
test = [name for name in open_dataset(f"sbi2015:{root}", scenes=[scene], pairs_per_scene=16).names
        if name not in trained]
open(f"{run}/test-names.txt", "w").write("\n".join(test) + "\n")
EOF
  scored=(--data-option "scenes=[$scene]" --data-option pairs_per_scene=16 --names "$run/test-names.txt")
  $BIN/changeseg evaluate -m "$run/best" -d "sbi2015:$DATA" "${scored[@]}" -o "$run/eval" > /dev/null
  $BIN/changeseg evaluate -m "$run/best" -d "sbi2015:$DATA" "${scored[@]}" -t "$KEPT" -o "$run/eval-kept" > /dev/null
  $BIN/changeseg evaluate -m default -d "sbi2015:$DATA" "${scored[@]}" -o "$run/eval-zero-shot" > /dev/null
done
$BIN/python - "$OUT" $SCENES <<'EOF'
import json
import sys
out, scenes = sys.argv[1], sys.argv[2:]
def scored(folder):
    report = json.load(open(f"{folder}/metrics.json"))
    return report["threshold"], report["f1_at_threshold"]
for scene in scenes:
    n = len(open(f"{out}/{scene}/test-names.txt").read().split())
    (t0, zero), (t1, tuned), (t2, kept) = (scored(f"{out}/{scene}/{e}") for e in ("eval-zero-shot", "eval", "eval-kept"))
    print(f"{scene}: {n} held-out pairs  zero-shot F1 {zero:.3f} (t {t0:.2f})  fine-tuned {tuned:.3f} "
          f"(t {t1:.2f})  fine-tuned at the start's threshold {kept:.3f} (t {t2:.2f})")
EOF
