"""bench/radiometric_matching.py: the two matchings do what they say; a bad set is one error line."""

from __future__ import annotations

import numpy as np

from tests.tools.scripts import load_script

matching = load_script("bench/radiometric_matching.py")


def pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    reference = rng.integers(0, 256, (40, 50, 3)).astype(np.uint8)
    comparison = np.clip(reference * np.array([0.6, 1.1, 0.8]) + 20, 0, 255).astype(np.uint8)
    return reference, comparison


def test_mean_std_matching_takes_the_references_statistics() -> None:
    reference, comparison = pair()
    matched = matching.match_mean_std(reference, comparison)
    assert matched.dtype == np.uint8 and matched.shape == comparison.shape
    np.testing.assert_allclose(matched.mean(axis=(0, 1)), reference.mean(axis=(0, 1)), atol=1.5)
    np.testing.assert_allclose(matched.std(axis=(0, 1)), reference.std(axis=(0, 1)), rtol=0.03)


def test_histogram_matching_undoes_a_monotone_colour_change() -> None:
    reference, comparison = pair(1)
    before = np.abs(comparison.astype(int) - reference).mean()
    after = np.abs(matching.match_histogram(reference, comparison).astype(int) - reference).mean()
    assert before > 20 and after < 3


def test_bad_set_is_one_error_line(capsys) -> None:
    assert matching.main(["aerial", "nosuchformat:/nowhere"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
