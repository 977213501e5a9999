"""Unaligned pairs: register the comparison image onto the reference before detecting change.

Keypoints (SIFT by default, or ORB) are matched between the two images (Lowe's ratio test),
a homography is fitted with RANSAC, optionally refined by ECC (enhanced correlation
coefficient) maximisation, and the comparison is warped into the reference's pixel grid.
Pixels of the reference that the warped comparison does not cover are *unknown*: the
pipeline sets their change probability to 0 and reports them separately, so they are never
reported as change; it also fills them with the reference's own pixels before predicting
(`fill_uncovered`), so the black outside the overlap cannot leak false change into its edge.

Features are found on copies scaled down to at most `AlignOptions.max_side` pixels, so the
cost does not grow with the image; the homography is scaled back to full resolution.
Alignment that cannot be trusted (too few matches or inliers, a low inlier ratio, a
degenerate or mirror-image homography, too little overlap) is an InputError that says which
test failed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from changeseg.errors import InputError

METHODS = ("sift", "orb")


@dataclass(frozen=True)
class AlignOptions:
    """Settings of `align_pair` (the defaults suit photos and aerial/satellite crops)."""

    method: str = "sift"  # "sift" or "orb"
    ecc: bool = False  # refine the homography by ECC maximisation
    max_features: int = 5000
    ratio: float = 0.75  # Lowe's ratio test
    ransac_threshold: float = 3.0  # pixels, at the working (scaled-down) resolution
    min_inliers: int = 15
    min_inlier_ratio: float = 0.25
    min_overlap: float = 0.1  # fraction of the reference covered by the warped comparison
    max_side: int = 1600  # features are found on copies at most this large
    border: int = 1  # pixels eroded from the overlap edge (interpolation there mixes in padding)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"alignment method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not 0.0 < self.ratio <= 1.0:
            raise InputError(f"alignment ratio test must be in (0, 1], got {self.ratio}")
        if self.min_inliers < 4:
            raise InputError(f"alignment needs at least 4 inliers for a homography, got {self.min_inliers}")


@dataclass(frozen=True)
class AlignmentReport:
    """How well the comparison was registered onto the reference (JSON-ready via `to_dict`)."""

    method: str
    keypoints_reference: int
    keypoints_comparison: int
    matches: int  # matches passing the ratio test
    inliers: int  # RANSAC inliers
    inlier_ratio: float
    residual_px: float  # RMS reprojection error of the inliers, full-resolution pixels
    overlap_fraction: float  # fraction of the reference covered by the warped comparison
    ecc_correlation: float | None = None
    ecc_note: str = ""
    scale: float = 1.0  # working resolution / full resolution

    def to_dict(self) -> dict:
        """The report as a JSON-ready dict (floats rounded)."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, float):
                data[key] = round(value, 4)
        return data


@dataclass
class Alignment:
    """The result of `align_pair`: the homography, the warped comparison and what is unknown."""

    homography: np.ndarray  # 3×3, maps comparison pixel (x, y) to reference pixel (x, y)
    warped: np.ndarray  # the comparison in the reference's grid (reference H×W, comparison C)
    valid: np.ndarray  # H×W bool: reference pixels the comparison covers
    report: AlignmentReport

    @property
    def unknown(self) -> np.ndarray:
        """H×W bool: reference pixels the comparison does not cover."""
        return ~self.valid


def to_grey_uint8(image: np.ndarray) -> np.ndarray:
    """A uint8 greyscale copy of any H×W×C image for feature matching (robust 1–99 % stretch)."""
    array = image if image.ndim == 2 else image[:, :, :3].astype(np.float32).mean(axis=2)
    array = np.asarray(array, np.float32)
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return np.zeros(array.shape, np.uint8)
    sample = finite[:: max(1, finite.size // 200_000)]
    lo, hi = np.percentile(sample, [1.0, 99.0])
    if hi <= lo:
        hi = lo + 1.0
    scaled = np.clip((np.nan_to_num(array, nan=lo) - lo) / (hi - lo), 0.0, 1.0)
    return (scaled * 255.0).round().astype(np.uint8)


def _working_copy(grey: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    scale = min(1.0, max_side / max(grey.shape))
    if scale >= 1.0:
        return grey, 1.0
    size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA), scale


def _detector(options: AlignOptions):
    if options.method == "orb":
        return cv2.ORB_create(nfeatures=options.max_features), cv2.NORM_HAMMING
    return cv2.SIFT_create(nfeatures=options.max_features), cv2.NORM_L2


def _match(reference: np.ndarray, comparison: np.ndarray, options: AlignOptions
           ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Ratio-test matches as point arrays (comparison points, reference points)."""
    detector, norm = _detector(options)
    kp_ref, desc_ref = detector.detectAndCompute(reference, None)
    kp_cmp, desc_cmp = detector.detectAndCompute(comparison, None)
    counts = len(kp_ref), len(kp_cmp)
    if desc_ref is None or desc_cmp is None or min(counts) < 4:
        raise InputError(f"alignment impossible: too few keypoints (reference {counts[0]}, comparison "
                         f"{counts[1]}); are the images blank or of different scenes?")
    matcher = cv2.BFMatcher(norm)
    pairs = matcher.knnMatch(desc_cmp, desc_ref, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < options.ratio * p[1].distance]
    cmp_points = np.float32([kp_cmp[m.queryIdx].pt for m in good]).reshape(-1, 2)
    ref_points = np.float32([kp_ref[m.trainIdx].pt for m in good]).reshape(-1, 2)
    return cmp_points, ref_points, *counts


def _scaling(scale: float) -> np.ndarray:
    return np.diag([scale, scale, 1.0])


def check_homography(homography: np.ndarray, cmp_shape: tuple[int, int],
                      ref_shape: tuple[int, int]) -> None:
    """Raise InputError for a homography that cannot describe two views of one scene."""
    if homography is None or not np.all(np.isfinite(homography)) or abs(homography[2, 2]) < 1e-12:
        raise InputError("alignment impossible: RANSAC found no homography")
    h = homography / homography[2, 2]
    det = float(np.linalg.det(h[:2, :2]))
    if det <= 0:
        raise InputError("alignment impossible: degenerate homography (it mirrors or collapses the image)")
    if not 1 / 16 < det < 16:
        raise InputError(f"alignment impossible: degenerate homography (area scale {det:.3g}, expected "
                         "between 1/16 and 16)")
    height, width = cmp_shape
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]]).reshape(-1, 1, 2)
    denominators = corners.reshape(-1, 2) @ h[2, :2] + h[2, 2]
    if np.any(denominators <= 0.05):
        raise InputError("alignment impossible: degenerate homography (the comparison's corners map "
                         "to or behind the horizon)")
    warped = cv2.perspectiveTransform(corners, h).reshape(-1, 2)
    if not cv2.isContourConvex(warped.astype(np.float32).reshape(-1, 1, 2)):
        raise InputError("alignment impossible: degenerate homography (the warped comparison is not convex)")
    ref_h, ref_w = ref_shape
    if np.abs(warped).max() > 64 * max(ref_h, ref_w):
        raise InputError("alignment impossible: degenerate homography (corners land far outside the "
                         "reference)")


def _refine_ecc(reference: np.ndarray, comparison: np.ndarray, homography: np.ndarray
                ) -> tuple[np.ndarray, float | None, str]:
    """ECC refinement at working resolution; returns (homography, correlation, note)."""
    template = reference.astype(np.float32) / 255.0
    moving = comparison.astype(np.float32) / 255.0
    warp = np.linalg.inv(homography).astype(np.float32)  # ECC maps template → input coordinates
    warp /= warp[2, 2]
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-6)
    try:
        correlation, refined = cv2.findTransformECC(template, moving, warp, cv2.MOTION_HOMOGRAPHY,
                                                    criteria, None, 5)
    except cv2.error as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "did not converge"
        return homography, None, f"ECC refinement skipped ({reason})"
    refined_h = np.linalg.inv(refined.astype(np.float64))
    refined_h /= refined_h[2, 2]
    # Accept the refinement only if it stays near the feature estimate: ECC can run away.
    height, width = comparison.shape[:2]
    corners = np.float64([[0, 0], [width, 0], [width, height], [0, height]]).reshape(-1, 1, 2)
    before = cv2.perspectiveTransform(corners, homography)
    after = cv2.perspectiveTransform(corners, refined_h)
    shift = float(np.abs(after - before).max())
    if not np.isfinite(shift) or shift > 0.05 * max(height, width) + 5:
        return homography, float(correlation), f"ECC refinement rejected (moved corners {shift:.1f} px)"
    return refined_h, float(correlation), "ECC refinement applied"


def estimate_homography(reference: np.ndarray, comparison: np.ndarray,
                        options: AlignOptions | None = None) -> tuple[np.ndarray, AlignmentReport]:
    """The homography mapping comparison pixels onto reference pixels, and its quality report.

    Raises InputError when the images cannot be registered (see the module docstring).
    """
    options = options or AlignOptions()
    ref_full, cmp_full = to_grey_uint8(reference), to_grey_uint8(comparison)
    ref_grey, ref_scale = _working_copy(ref_full, options.max_side)
    cmp_grey, cmp_scale = _working_copy(cmp_full, options.max_side)
    cmp_points, ref_points, n_ref, n_cmp = _match(ref_grey, cmp_grey, options)
    if len(cmp_points) < options.min_inliers:
        raise InputError(f"alignment impossible: only {len(cmp_points)} feature matches passed the ratio "
                         f"test (need at least {options.min_inliers}); are these images of the same scene?")
    small_h, inlier_mask = cv2.findHomography(cmp_points, ref_points, cv2.RANSAC,
                                              options.ransac_threshold, maxIters=5000, confidence=0.999)
    if small_h is None or inlier_mask is None:
        raise InputError("alignment impossible: RANSAC found no homography consistent with the matches")
    inliers = inlier_mask.ravel().astype(bool)
    count = int(inliers.sum())
    ratio = count / len(cmp_points)
    if count < options.min_inliers:
        raise InputError(f"alignment impossible: only {count} RANSAC inliers of {len(cmp_points)} matches "
                         f"(need at least {options.min_inliers})")
    if ratio < options.min_inlier_ratio:
        raise InputError(f"alignment impossible: inlier ratio {ratio:.2f} ({count}/{len(cmp_points)}) is "
                         f"below {options.min_inlier_ratio}; the matches do not agree on one transform")
    check_homography(small_h, cmp_grey.shape[:2], ref_grey.shape[:2])
    ecc_correlation, ecc_note = None, ""
    if options.ecc:
        small_h, ecc_correlation, ecc_note = _refine_ecc(ref_grey, cmp_grey, small_h)
    # Back to full resolution: x_ref = S_ref⁻¹ · H_small · S_cmp · x_cmp.
    homography = np.linalg.inv(_scaling(ref_scale)) @ small_h @ _scaling(cmp_scale)
    homography /= homography[2, 2]
    check_homography(homography, comparison.shape[:2], reference.shape[:2])
    projected = cv2.perspectiveTransform(cmp_points[inliers].reshape(-1, 1, 2).astype(np.float64) / cmp_scale,
                                         homography).reshape(-1, 2)
    errors = np.linalg.norm(projected - ref_points[inliers] / ref_scale, axis=1)
    residual = float(np.sqrt(np.mean(errors ** 2)))
    report = AlignmentReport(options.method, n_ref, n_cmp, len(cmp_points), count, ratio, residual,
                             overlap_fraction=0.0, ecc_correlation=ecc_correlation, ecc_note=ecc_note,
                             scale=min(ref_scale, cmp_scale))
    return homography, report


def warp_to_reference(comparison: np.ndarray, homography: np.ndarray, reference_shape: tuple[int, int],
                      border: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Warp the comparison into the reference grid; returns (warped H×W×C, valid H×W bool)."""
    height, width = reference_shape
    channels = comparison.shape[2] if comparison.ndim == 3 else 1
    planes = [comparison[:, :, i:i + 4] for i in range(0, channels, 4)] if comparison.ndim == 3 \
        else [comparison]
    warped_planes = []
    for plane in planes:  # warpPerspective handles at most 4 channels at a time
        warped = cv2.warpPerspective(plane, homography, (width, height), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        warped_planes.append(warped.reshape(height, width, -1))
    warped = np.concatenate(warped_planes, axis=2) if comparison.ndim == 3 else warped_planes[0]
    coverage = cv2.warpPerspective(np.full(comparison.shape[:2], 255, np.uint8), homography, (width, height),
                                   flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    valid = coverage > 0
    if border > 0:
        kernel = np.ones((2 * border + 1, 2 * border + 1), np.uint8)
        valid = cv2.erode(valid.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT,
                          borderValue=0).astype(bool)
    return warped.astype(comparison.dtype, copy=False), valid


def fill_uncovered(warped: np.ndarray, reference: np.ndarray, uncovered: np.ndarray) -> np.ndarray:
    """The warped comparison with the pixels it does not cover taken from the reference.

    Left black, the uncovered area is a stark difference right beside the overlap, and a
    network's receptive field carries it inwards as a band of false change along the
    overlap's edge. Filled with the reference, the pair is identical there, so the edge
    carries only the change that is really inside the overlap (the pixels themselves stay
    unknown). Both arrays must have the same shape and dtype.
    """
    if warped.shape != reference.shape:
        raise InputError(f"warped comparison {warped.shape} and reference {reference.shape} differ in shape")
    if not uncovered.any():
        return warped
    filled = warped.copy()
    filled[uncovered] = reference[uncovered]
    return filled


def align_pair(reference: np.ndarray, comparison: np.ndarray,
               options: AlignOptions | None = None) -> Alignment:
    """Register `comparison` onto `reference` (H×W×C arrays, any sizes) and warp it.

    The warped comparison has the reference's size; `valid` marks the reference pixels it
    covers. Raises InputError when alignment is impossible or the overlap is too small.
    """
    options = options or AlignOptions()
    homography, report = estimate_homography(reference, comparison, options)
    warped, valid = warp_to_reference(comparison, homography, reference.shape[:2], options.border)
    overlap = float(valid.mean())
    if overlap < options.min_overlap:
        raise InputError(f"alignment impossible: the aligned comparison covers only {overlap:.1%} of the "
                         f"reference (need {options.min_overlap:.0%})")
    report = AlignmentReport(**{**asdict(report), "overlap_fraction": overlap})
    return Alignment(homography, warped, valid, report)
