#!/usr/bin/env bash
# Leave-one-out few-shot check of the packaged `default` model on the 3 TSUNAMI pairs:
# for each pair k, fine-tune `default` on the other two (`changeseg finetune` with its own
# defaults: with so few pairs it holds none back, trains 20 epochs on both and chooses the
# decision threshold on them) and evaluate on pair k, which it never saw. Prints one line per
# held-out pair and the mean. About 7 min per fine-tune on the 2-core CPU.
#   bash bench/tsunami_loo.sh [DATA_DIR]      (default ../shared/data/tsunami) → runs/tsunami-loo/
# FINETUNE_ARGS adds `changeseg finetune` options and overrides, FROM starts the fine-tunes from
# another model (a packaged name or a model folder; default `default`), OUT moves the runs, e.g. the
# rule before 2026-12-05 (one of the two pairs held back to choose the threshold on), 3 epochs:
#   FINETUNE_ARGS="trainer.max_epochs=3 data.val_fraction=0.2" OUT=runs/tsunami-loo-3ep bash bench/tsunami_loo.sh
# bench/tsunami_loo_rules.py then scores the finished runs under other thresholds and WiSE-FT mixes.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
DATA=$(realpath "${1:-../shared/data/tsunami}")
BIN=.venv/bin
OUT=${OUT:-runs/tsunami-loo}
FROM=${FROM:-default}
read -r -a EXTRA <<< "${FINETUNE_ARGS:-}"
for k in 0 1 2; do
  split=$OUT/split$k
  mkdir -p "$split/data/t0" "$split/data/t1" "$split/data/mask"
  for i in 0 1 2; do
    [ "$i" = "$k" ] && continue
    for sub in t0 t1; do ln -sf "$DATA/$sub/0000000$i.jpg" "$split/data/$sub/"; done
    ln -sf "$DATA/mask/0000000$i.png" "$split/data/mask/"
  done
  $BIN/changeseg finetune --from "$FROM" -d "pcd:$split/data" -o "$split/run" --no-progress "${EXTRA[@]}"
  echo "0000000$k" > "$split/heldout.txt"
  $BIN/changeseg evaluate -m "$split/run/best" -d "pcd:$DATA" --names "$split/heldout.txt" -o "$split/eval" --worst 1
done
$BIN/python - "$OUT" <<'EOF'
import json
import sys
scores = []
for k in range(3):
    report = json.load(open(f"{sys.argv[1]}/split{k}/eval/metrics.json"))
    g = report["protocols"]["global"]
    scores.append(g["f1"])
    print(f"held-out 0000000{k}: threshold {report['threshold']:.2f}  F1 {g['f1']:.3f} "
          f"(P {g['precision']:.3f} R {g['recall']:.3f})")
print(f"mean F1 {sum(scores) / len(scores):.3f}")
EOF
