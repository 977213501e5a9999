"""Which C-3PO networks give exactly the same output for (A, B) and (B, A), read from their config.

With one conv for the appear and disappear branches (`share_ad`, the paper's default) and sum
fusion, the two branches sum to conv_ad(ReLU(x)) + conv_ad(ReLU(−x)) = W·|x| + 2b, unchanged
when the reference's and the comparison's features are exchanged; the info and exchange branches
are symmetric too (`changeseg.models.merge`). With a shared (Siamese) backbone and no detail
refinement (which reads each image's own fine features) the whole network is then swap-symmetric:
it cannot tell an appearance from a disappearance, and a swapped test-time view of it repeats the
pair as it is. Torch-free, so the ONNX and OpenVINO backends use it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["is_swap_symmetric", "network_is_swap_symmetric"]


def is_swap_symmetric(branches: str, fusion: str, share_ad: bool) -> bool:
    """Whether an MTF gives the same output for (f0, f1) and (f1, f0) (see the module doc)."""
    has_both = "a" in branches and "d" in branches
    one_sided = ("a" in branches) != ("d" in branches)
    return fusion == "sum" and not one_sided and (share_ad or not has_both)


def network_is_swap_symmetric(model: Mapping[str, Any]) -> bool:
    """Whether a network with this `config.json` "model" section gives the same output for a pair
    and the swapped pair: a Siamese backbone, swap-symmetric MTFs and no detail refinement (the
    defaults of `changeseg.models.model.ModelConfig` where a key is missing)."""
    return (bool(model.get("siamese", True)) and model.get("refine", "none") == "none"
            and is_swap_symmetric(str(model.get("branches", "iade")), str(model.get("fusion", "sum")),
                                  bool(model.get("share_ad", True))))
