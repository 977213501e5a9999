"""Small images whose scores are worked out by hand, shared by the evaluation tests."""

from __future__ import annotations

import numpy as np

# Image A, 4×4. Label: 5 changed pixels. Prediction (p >= 0.5): the whole first row.
#   label        prediction     outcome
#   1 1 1 0      1 1 1 1        TP TP TP FP
#   1 1 0 0      0 0 0 0        FN FN TN TN
#   0 0 0 0      0 0 0 0        TN ...
#   0 0 0 0      0 0 0 0
# TP = 3, FP = 1, FN = 2, TN = 10.
# Exact: P = 3/4, R = 3/5, F1 = 2·3/(2·3+1+2) = 6/9 = 2/3, IoU = 3/6 = 1/2, acc = 13/16.
LABEL_A = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], np.uint8)
PROB_A = np.array([[0.9, 0.9, 0.9, 0.9], [0.1, 0.1, 0.1, 0.1], [0.0] * 4, [0.2] * 4])
# Image B, 4×4: no change, nothing predicted. TP = FP = FN = 0, TN = 16.
LABEL_B = np.zeros((4, 4), np.uint8)
PROB_B = np.full((4, 4), 0.1)
