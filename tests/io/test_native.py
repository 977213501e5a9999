"""Native decoder chatter (libpng, OpenCV's logger) is kept off the terminal when asked."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
import threading
import zlib

import numpy as np
import pytest

from changeseg.io.images import encode_png
from changeseg.io.native import native_stderr, quiet_native_output


def png_with_bad_chunks(path):
    """A valid 8×8 PNG carrying a too-short iCCP profile and a tEXt chunk with a wrong CRC:
    libpng decodes it but prints a warning for each."""
    data = encode_png(np.zeros((8, 8, 3), np.uint8))

    def chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
        value = zlib.crc32(kind + body) if crc is None else crc
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", value & 0xFFFFFFFF)
    ihdr_end = 8 + 25
    extra = chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(b"\x00" * 8)) + chunk(b"tEXt", b"k\x00v", crc=123)
    path.write_bytes(data[:ihdr_end] + extra + data[ihdr_end:])
    return path


SCRIPT = textwrap.dedent("""
    import sys
    from changeseg.io.images import read_image
    from changeseg.io.native import quiet_native_output
    quiet_native_output(sys.argv[2] == "quiet")
    print(read_image(sys.argv[1]).shape)
    try:
        read_image(sys.argv[3])
    except Exception as exc:
        print("error:", exc)
""")


@pytest.mark.parametrize("mode", ["quiet", "loud"])
def test_libpng_and_opencv_warnings_stay_off_stderr_when_quiet(mode, tmp_path):
    noisy = png_with_bad_chunks(tmp_path / "noisy.png")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(encode_png(np.zeros((64, 64, 3), np.uint8))[:-30])
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(noisy), mode, str(truncated)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "(8, 8, 3)" in run.stdout and "error: image: not a readable image" in run.stdout
    if mode == "quiet":
        assert run.stderr == ""
        assert "truncated or corrupt PNG file" in run.stdout
    else:  # the warnings exist: without the redirection they reach the terminal
        assert "libpng warning" in run.stderr


def test_only_the_main_thread_is_redirected(capfd):
    """A server's worker threads keep their stderr: only the main thread's native output is captured."""
    quiet_native_output(True)
    try:
        seen = {}

        def worker() -> None:
            with native_stderr() as captured:
                os.write(2, b"worker noise\n")
            seen["text"] = captured.text

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        with native_stderr() as captured:
            os.write(2, b"native noise\n")
    finally:
        quiet_native_output(False)
    assert captured.last_line == "native noise" and seen["text"] == ""
    assert capfd.readouterr().err == "worker noise\n"
