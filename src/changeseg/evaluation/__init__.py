"""Scoring change maps: the protocols, the evaluation loop and its report, used by the CLI
(`evaluate`, `finetune`) and the tools alike.

- `pixels`: one image's prediction against its label, and scores from pixel counts;
- `metrics`: the protocols as streaming accumulators (`c3po`, `global`, `boxes`, `sweep`);
- `boxes`: boxes from masks, box IoU and matching (the DeepPCB protocol's geometry);
- `runner`: `evaluate(predict, dataset, ...)`, the loop behind ``changeseg evaluate``;
- `report`, `plots`, `panels`: the report folder, its curves and its worst-image panels;
- `overlap`: which evaluated pairs a model trained on (its recorded training names);
- `selection`: which pairs (``--names``, a run's validation pairs) and which probabilities;
- `threshold`: a model's best-F1 threshold on its validation pairs;
- `calibration`: temperature / bias calibration of the change probability, ECE.

It imports `data` and `io` (and `labels`), never `training`, `inference` or `cli`.
"""
