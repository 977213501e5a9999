"""Pack the data of device recipes into `.device/data`, small enough to travel to the device machine.

    .venv/bin/python tools/device_bundle.py configs/device-pcb.yaml configs/device-aerial.yaml

A lent accelerator (the `device` tool) receives a copy of the working tree and nothing beside
it, 64 MiB in all, and `../shared/data` does not travel. This tool copies the data folders a
recipe reads (every `${CHANGESEG_DATA}/NAME` in its `spec` lines) into `.device/data/NAME`
(git-ignored; name `.device` in the call's `carry`), keeping every file name, so the same
readers open them with `CHANGESEG_DATA=.device/data`. To make them small it re-encodes images,
keeping each file's name (the readers decode by content, not by suffix):

- two-level images become 1-bit PNG: masks whose pixels are all 0 or 255
  (lossless), and JPEG-stored binarised images such as DeepPCB's boards, whose ringing keeps at
  least 99.9 % of the pixels within 32 grey levels of black or white (thresholded at the middle:
  the ringing is removed);
- other images with at most 16 grey levels (label maps with an ignore value) become PNG;
- photographs become JPEG at quality 95 without chroma subsampling (lossy: a training input,
  not a label; `--jpeg-quality Q --subsample-chroma` makes them smaller where a call would not
  fit: the aerial sets 18.7 MiB at the default, 7.9 MiB at 85 with 4:2:0);
- non-image files, and images whose EXIF asks for a rotation, are copied as they are; 13-band
  GeoTIFF folders (`imgs_1/`, `imgs_2/`, `*.tif`) are left out (no device recipe reads bands).

It prints each folder's size before and after and the total the call would carry with the
tracked files, and exits 1 when that passes `--limit-mib`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
SKIPPED = re.compile(r"(^|/)imgs_\d(_rect)?(/|$)|\.tiff?$", re.IGNORECASE)
DATA_REFERENCE = re.compile(r"\$\{CHANGESEG_DATA\}/([^\s'\"]+)")
TWO_LEVEL_SHARE = 0.999
TWO_LEVEL_TOLERANCE = 32
JPEG_QUALITY = 95
EXIF_ORIENTATION = 0x0112


def recipe_folders(recipe: Path) -> list[str]:
    """The top-level data folders a recipe reads through `${CHANGESEG_DATA}/…`, in order."""
    names = [match.split("/")[0] for match in DATA_REFERENCE.findall(recipe.read_text(encoding="utf-8"))]
    return list(dict.fromkeys(names))


def _encode(suffix: str, image: np.ndarray, params: list[int]) -> bytes:
    ok, data = cv2.imencode(suffix, image, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as {suffix}")
    return data.tobytes()


def encode_image(image: np.ndarray, lossy_source: bool, quality: int = JPEG_QUALITY,
                 subsample_chroma: bool = False) -> tuple[bytes, str]:
    """The smallest faithful encoding of a uint8 image for training: (bytes, kind).

    `lossy_source` (a JPEG file) allows near-two-level images to be binarised; `quality` and
    `subsample_chroma` (4:2:0 instead of 4:4:4) apply to photographs.
    """
    grey = image if image.ndim == 2 else image[:, :, 0]
    single = image.ndim == 2 or all(np.array_equal(grey, image[:, :, c]) for c in range(image.shape[2]))
    if single:
        top = int(grey.max())
        if lossy_source:
            near = (grey <= TWO_LEVEL_TOLERANCE) | (grey >= top - TWO_LEVEL_TOLERANCE)
            two_level = top > 2 * TWO_LEVEL_TOLERANCE and near.mean() >= TWO_LEVEL_SHARE
        else:
            two_level = top > 0 and bool(np.isin(grey, (0, top)).all())
        if two_level and top == 255:  # 1-bit PNG reads back as 0/255
            binary = np.where(grey > top // 2, 255, 0).astype(np.uint8)
            one_bit = [cv2.IMWRITE_PNG_BILEVEL, 1, cv2.IMWRITE_PNG_COMPRESSION, 9]
            return _encode(".png", binary, one_bit), "1-bit png"
        if len(np.unique(grey)) <= 16:
            return _encode(".png", grey, [cv2.IMWRITE_PNG_COMPRESSION, 9]), "png"
        return _encode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, quality]), "jpeg"
    sampling = (cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420 if subsample_chroma
                else cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling]
    return _encode(".jpg", image, params), "jpeg"


def _rotated(path: Path) -> bool:
    """Whether an image's EXIF asks viewers to rotate it (re-encoding would drop that: copy it)."""
    try:
        with Image.open(path) as image:
            return image.getexif().get(EXIF_ORIENTATION, 1) != 1
    except OSError:
        return False


def pack_folder(source: Path, target: Path, quality: int = JPEG_QUALITY,
                subsample_chroma: bool = False) -> tuple[int, int]:
    """Copy `source` into `target`, images re-encoded (photographs at `quality`, chroma
    subsampled if asked); returns (bytes before, bytes after)."""
    before = after = 0
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source).as_posix()
        if not path.is_file() or SKIPPED.search(relative):
            continue
        out = target / relative
        out.parent.mkdir(parents=True, exist_ok=True)
        before += path.stat().st_size
        image = (cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
                 if path.suffix.lower() in IMAGE_SUFFIXES and not _rotated(path) else None)
        if image is not None and image.dtype == np.uint8 and image.ndim in (2, 3) and (
                image.ndim == 2 or image.shape[2] in (1, 3)):
            data, _ = encode_image(image, path.suffix.lower() in (".jpg", ".jpeg"), quality, subsample_chroma)
            if len(data) >= path.stat().st_size:
                shutil.copyfile(path, out)
            else:
                out.write_bytes(data)
        else:
            shutil.copyfile(path, out)
        after += out.stat().st_size
    return before, after


def tracked_bytes(repo: Path) -> int:
    """Bytes of the files a device call always carries: tracked and untracked-not-ignored ones."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=repo, capture_output=True, check=True).stdout.decode()
    names = [name for name in listing.split("\0") if name and (repo / name).is_file()]
    return sum((repo / name).stat().st_size for name in names)


def main(argv: list[str] | None = None) -> int:
    """Pack the data folders of the given recipes; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="+", type=Path, help="device recipes (configs/device-*.yaml)")
    default_data = Path(os.environ.get("CHANGESEG_DATA", "../shared/data"))
    parser.add_argument("--data", type=Path, default=default_data,
                        help="the data folder the recipes name as ${CHANGESEG_DATA} "
                             "(default: $CHANGESEG_DATA or ../shared/data)")
    parser.add_argument("--out", type=Path, default=Path(".device/data"), help="where the packed folders go")
    parser.add_argument("--limit-mib", type=float, default=64.0, help="what one device call may carry in all")
    parser.add_argument("--jpeg-quality", type=int, default=JPEG_QUALITY,
                        help=f"JPEG quality of re-encoded photographs (default {JPEG_QUALITY})")
    parser.add_argument("--subsample-chroma", action="store_true",
                        help="JPEG chroma at 4:2:0 instead of 4:4:4 (smaller, a little softer colour)")
    args = parser.parse_args(argv)
    if not 1 <= args.jpeg_quality <= 100:
        print(f"error: --jpeg-quality must be 1-100, not {args.jpeg_quality}", file=sys.stderr)
        return 1
    folders: list[str] = []
    for recipe in args.recipes:
        if not recipe.is_file():
            print(f"error: recipe {recipe} not found", file=sys.stderr)
            return 1
        folders.extend(recipe_folders(recipe))
    folders = list(dict.fromkeys(folders))
    missing = [name for name in folders if not (args.data / name).is_dir()]
    if missing:
        print(f"error: {', '.join(missing)} not found under {args.data}", file=sys.stderr)
        return 1
    if args.out.exists():
        shutil.rmtree(args.out)
    packed = 0
    for name in folders:
        before, after = pack_folder(args.data / name, args.out / name, args.jpeg_quality,
                                    args.subsample_chroma)
        packed += after
        print(f"{name}: {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB")
    repo = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                               check=True).stdout.strip())
    carried = tracked_bytes(repo)
    total = (carried + packed) / 2**20
    print(f"packed {packed / 2**20:.1f} MiB into {args.out}; with the working tree's "
          f"{carried / 2**20:.1f} MiB a call carries {total:.1f} MiB (limit {args.limit_mib:g})")
    if total > args.limit_mib:
        print(f"error: {total:.1f} MiB is over the {args.limit_mib:g} MiB a device call carries: pack fewer "
              "recipes per call, or photographs smaller (--jpeg-quality 85 --subsample-chroma)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
