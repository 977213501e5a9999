"""What the CPU can do, read from /proc/cpuinfo."""

from __future__ import annotations

from pathlib import Path

from changeseg.hardware import cpu_model, cpu_supports_bf16, native_bf16_in

CPUINFO = Path("/proc/cpuinfo")


def test_cpu_model_names_this_cpu() -> None:
    name = cpu_model()
    assert isinstance(name, str) and name
    if CPUINFO.is_file():
        models = [line.split(":", 1)[1].strip() for line in CPUINFO.read_text().splitlines()
                  if line.startswith("model name")]
        assert not models or name == models[0]


def test_native_bf16_is_read_from_the_cpu_flags() -> None:
    amx = "model name\t: Intel(R) Xeon(R)\nflags\t\t: fpu sse avx2 avx512f amx_bf16 amx_tile\n"
    avx512 = "flags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n"
    epyc = "model name\t: AMD EPYC\nflags\t\t: fpu sse avx avx2 fma\n"
    assert native_bf16_in(amx) and native_bf16_in(avx512)
    assert not native_bf16_in(epyc) and not native_bf16_in("")
    assert not native_bf16_in("flags : avx512_bf16x")  # a whole flag, not a prefix
    assert cpu_supports_bf16() is (CPUINFO.is_file() and native_bf16_in(CPUINFO.read_text()))
