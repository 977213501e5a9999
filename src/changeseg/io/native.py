"""Keep native libraries' chatter (libpng, OpenCV's logger) off the terminal.

OpenCV's image codecs print straight to file descriptor 2 ("libpng warning: iCCP: known
incorrect sRGB profile", "[ WARN:0@0.01] … PNG input buffer is incomplete"), below Python's
`sys.stderr`, so no Python setting can hide them. `native_stderr()` points descriptor 2 at a
temporary file for the duration of one call and hands back what was written, so the caller
can fold it into its own error message.

Redirecting a process-wide descriptor also hides what other threads write meanwhile, so it is
opt-in and confined to the main thread: command-line tools call `quiet_native_output(True)`
once (the `changeseg` CLI does), and calls from other threads — an HTTP server's workers,
whose log goes to stderr — are never redirected. This module imports nothing heavy, so the
CLI can switch it on before any verb is imported.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_LOCK = threading.Lock()
_STATE = {"quiet": False}


def quiet_native_output(enabled: bool = True) -> None:
    """Turn the redirection of native libraries' stderr during image codec calls on or off."""
    _STATE["quiet"] = bool(enabled)


def native_output_quiet() -> bool:
    """Whether native stderr is being captured (see `quiet_native_output`)."""
    return _STATE["quiet"]


class Captured:
    """Text a native library wrote to stderr inside `native_stderr()` (empty when not captured)."""

    def __init__(self) -> None:
        self.text = ""

    @property
    def last_line(self) -> str:
        """The last non-empty line, stripped ("" when nothing was written)."""
        lines = [line.strip() for line in self.text.splitlines() if line.strip()]
        return lines[-1] if lines else ""


@contextmanager
def native_stderr() -> Iterator[Captured]:
    """Capture what native code writes to descriptor 2 inside the block (quiet on, main thread)."""
    captured = Captured()
    if not _STATE["quiet"] or threading.current_thread() is not threading.main_thread():
        yield captured
        return
    with _LOCK, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", "replace")
