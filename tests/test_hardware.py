"""What the CPU can do, read from /proc/cpuinfo."""

from __future__ import annotations

from pathlib import Path

from changeseg.hardware import cpu_model, cpu_supports_bf16

CPUINFO = Path("/proc/cpuinfo")


def test_cpu_model_names_this_cpu() -> None:
    name = cpu_model()
    assert isinstance(name, str) and name
    if CPUINFO.is_file():
        models = [line.split(":", 1)[1].strip() for line in CPUINFO.read_text().splitlines()
                  if line.startswith("model name")]
        assert not models or name == models[0]


def test_native_bf16_is_read_from_the_cpu_flags() -> None:
    if not CPUINFO.is_file():
        assert cpu_supports_bf16() is False
        return
    flags = set(CPUINFO.read_text().split())
    assert cpu_supports_bf16() is bool(flags & {"avx512_bf16", "amx_bf16"})
