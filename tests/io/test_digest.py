"""File hashes read in chunks equal the hash of the whole file's bytes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from changeseg.io.digest import CHUNK, file_sha256, update_digest


def test_chunked_hash_equals_the_hash_of_the_bytes(tmp_path, rng):
    data = rng.integers(0, 256, 2 * CHUNK + 17, dtype=np.uint8).tobytes()  # spans three chunks
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    prefixed = update_digest(hashlib.sha256(b"key\n"), path)
    assert prefixed.hexdigest() == hashlib.sha256(b"key\n" + data).hexdigest()
    with pytest.raises(OSError):
        file_sha256(tmp_path / "missing.bin")
