"""What this machine's CPU can do, read without importing torch.

Inference (`changeseg.inference`) and training (`changeseg.training`) both choose their
precision from it: bf16 pays off only on a CPU with native bf16 arithmetic (AVX512-BF16 or
AMX); elsewhere PyTorch and oneDNN emulate it, many times slower than fp32.
"""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path


@cache
def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX512-BF16 or AMX), where bf16 pays off.

    Read from /proc/cpuinfo (no torch import): PyTorch's autocast, OpenVINO's bf16 inference
    precision hint and bf16 training on the CPU are used only where this is true.
    """
    try:
        return native_bf16_in(Path("/proc/cpuinfo").read_text())
    except OSError:
        return False


def native_bf16_in(cpuinfo: str) -> bool:
    """Whether a /proc/cpuinfo text lists a native bf16 flag (`avx512_bf16` or `amx_bf16`)."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpuinfo.split()))


@cache
def cpu_model() -> str:
    """This CPU's model name (/proc/cpuinfo's first "model name"), else what `platform` knows;
    for benchmark, training and packaging records."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
