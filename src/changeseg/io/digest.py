"""SHA-256 of files, read in chunks (cache keys, recipe and manifest fingerprints)."""

from __future__ import annotations

import hashlib
import os
from typing import Any

CHUNK = 1 << 20  # bytes read at a time


def update_digest(digest: Any, path: str | os.PathLike) -> Any:
    """Feed a file's bytes into a hashlib `digest`, a chunk at a time; returns the digest.
    Raises OSError when the file cannot be read."""
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 (hex) of a file's bytes."""
    return update_digest(hashlib.sha256(), path).hexdigest()
