"""KITTI Road (``data_road``) for training and evaluation: layout, ground-truth colours and splits.

Layout under the root folder::

    training/image_2/<cat>_<id>.png         RGB frames (KITTI: um_000000.png;
                                            CamVid copy: 0016E5_00390.png)
    training/gt_image_2/<cat>_road_<id>.png ground truth (``*_lane_*`` files are ignored)
    testing/image_2/<cat>_<id>.png          unlabelled frames for benchmark submissions

The category is the stem up to its last ``_``; no category names are hard-coded. Ground truth is
read by the KITTI devkit's channel rule (``decode_target``): road (255, 0, 255) -> 1, non-road
(255, 0, 0) -> 0, and black or blue (0, 0, 255) -> 255 (outside the evaluation area, ignored).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch

from ..errors import DataError

IGNORE_INDEX = 255
# road, non-road, outside, road outside
KNOWN_COLOURS = ((255, 0, 255), (255, 0, 0), (0, 0, 0), (0, 0, 255))
KNOWN_CODES = np.array([r << 16 | g << 8 | b for r, g, b in KNOWN_COLOURS])
IMAGE_DIR, GT_DIR = "image_2", "gt_image_2"


@dataclass(frozen=True)
class Sample:
    """One frame: its stem (``um_000000``), category (``um``), image path and ground truth.

    The ground truth is None when unlabelled.
    """

    stem: str
    image: Path
    target: Path | None
    dataset: str = ""  # the name of the dataset's root folder, e.g. data_road, camvid_road

    @property
    def category(self) -> str:
        return category_of(self.stem)


def category_of(stem: str) -> str:
    """``um_000000`` -> ``um``; ``0016E5_00390`` -> ``0016E5``."""
    if "_" not in stem:
        raise DataError(f"file stem {stem!r} has no '_' between category and frame number")
    return stem.rsplit("_", 1)[0]


def gt_name(stem: str) -> str:
    """Ground-truth (and submission) file of a stem: ``um_000000`` -> ``um_road_000000.png``."""
    cat, frame = stem.rsplit("_", 1)
    return f"{cat}_road_{frame}.png"


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An RGB uint8 H x W x 3 image read with OpenCV; DataError naming the file if unreadable."""
    bgr = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"cannot read image {path} (missing, not an image or corrupt)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def decode_target(rgb: np.ndarray) -> np.ndarray:
    """KITTI ground truth (RGB H x W x 3) -> uint8 labels by the devkit's channel rule.

    The devkit evaluates where the red channel is > 0 and calls road where the blue channel is > 0.
    So magenta is road (1), red non-road (0), and black and blue (road outside the evaluation
    area, found in a few real files) are ignored (255), as is anything else without red.
    """
    valid = rgb[..., 0] > 0
    labels = np.full(rgb.shape[:2], IGNORE_INDEX, np.uint8)
    labels[valid] = rgb[..., 2][valid] > 0
    return labels


def unexpected_colours(rgb: np.ndarray) -> str | None:
    """A description of pixels in other colours than magenta, red, black and blue, or None."""
    code = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    other = ~np.isin(code, KNOWN_CODES)
    if not other.any():
        return None
    colours, counts = np.unique(code[other], return_counts=True)
    listed = ", ".join(
        f"RGB({c >> 16}, {c >> 8 & 255}, {c & 255}) x {n}" for c, n in zip(colours[:8], counts[:8])
    )
    return (
        f"{int(other.sum())} pixels in colours other than road (255,0,255), non-road (255,0,0), "
        f"black or blue: {listed}{' ...' if len(colours) > 8 else ''}; "
        "decoded by the devkit's channel rule"
    )


def read_target(path: str | os.PathLike) -> np.ndarray:
    """Labels (uint8 H x W: 0 non-road, 1 road, 255 ignore) of a KITTI ground-truth PNG."""
    return decode_target(read_image(path))


def load_sample(sample: Sample) -> tuple[np.ndarray, np.ndarray | None]:
    """The RGB image and labels of ``sample``, checking that their sizes agree."""
    image = read_image(sample.image)
    if sample.target is None:
        return image, None
    target = read_target(sample.target)
    if target.shape != image.shape[:2]:
        raise DataError(
            f"ground truth {sample.target} is {target.shape[1]}x{target.shape[0]} but image "
            f"{sample.image} is {image.shape[1]}x{image.shape[0]}"
        )
    return image, target


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder} (expected a KITTI data_road root)")
    return sorted(folder.glob("*.png"))


def list_samples(root: str | os.PathLike) -> list[Sample]:
    """Every labelled frame of ``root/training``, sorted by stem.

    DataError for an image without ground truth.
    """
    root = Path(root)
    samples = []
    for image in _images(root / "training" / IMAGE_DIR):
        target = root / "training" / GT_DIR / gt_name(image.stem)
        if not target.is_file():
            raise DataError(f"image {image} has no ground truth (expected {target})")
        samples.append(Sample(image.stem, image, target, dataset_name(root)))
    if not samples:
        raise DataError(f"no images in {root / 'training' / IMAGE_DIR}")
    return samples


def dataset_name(root: str | os.PathLike) -> str:
    """The name a dataset goes by in logs and metrics: its root folder's name."""
    return Path(root).resolve().name


def testing_samples(root: str | os.PathLike) -> list[Sample]:
    """The unlabelled frames of ``root/testing/image_2`` (for submission files), sorted by stem."""
    return [Sample(p.stem, p, None) for p in _images(Path(root) / "testing" / IMAGE_DIR)]


def read_stems(path: str | os.PathLike) -> list[str]:
    """Stems listed one per line (blank lines and ``#`` comments skipped)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise DataError(f"cannot read split file {path}: {exc}") from exc
    return [s for s in (line.split("#", 1)[0].strip() for line in lines) if s]


def select(
    samples: Sequence[Sample], stems: Sequence[str], source: str | os.PathLike
) -> list[Sample]:
    """The samples named by ``stems`` (in that order).

    DataError naming ``source`` for unknown stems.
    """
    by_stem = {s.stem: s for s in samples}
    missing = [s for s in stems if s not in by_stem]
    if missing:
        raise DataError(
            f"split file {source}: {len(missing)} stems have no image and ground truth in the "
            f"dataset, e.g. {missing[:5]}"
        )
    return [by_stem[s] for s in stems]


def seeded_split(
    samples: Sequence[Sample], val_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """(train, val): per category, ``round(n * val_fraction)`` val frames drawn with ``seed``."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    train, val = [], []
    for cat in sorted({s.category for s in samples}):
        group = sorted((s for s in samples if s.category == cat), key=lambda s: s.stem)
        picked = set(
            random.Random(f"{seed}/{cat}").sample(
                range(len(group)), round(len(group) * val_fraction)
            )
        )
        for i, s in enumerate(group):
            (val if i in picked else train).append(s)
    return train, val


SPLIT_FILES = {"train": "train.txt", "val": "val.txt"}  # a dataset's own split, at its root


def split(
    root: str | os.PathLike,
    part: str,
    stems_file: str | os.PathLike | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> list[Sample]:
    """Part ``"train"`` or ``"val"`` of the labelled frames.

    From a stems file, else the dataset's own ``train.txt`` / ``val.txt`` at its root (CamVid's
    splits), else a seeded split.
    """
    samples = list_samples(root)
    own = Path(root) / SPLIT_FILES[part]
    if stems_file is None and own.is_file():
        stems_file = own
    if stems_file is not None:
        return select(samples, read_stems(stems_file), stems_file)
    train, val = seeded_split(samples, val_fraction, seed)
    return {"train": train, "val": val}[part]


def group_by_dataset(samples: Sequence[Sample]) -> dict[str, list[Sample]]:
    """``samples`` per dataset name, in the order the datasets first appear."""
    groups: dict[str, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(sample.dataset, []).append(sample)
    return groups


def _check_one(sample: Sample) -> tuple[str | None, bool]:
    """Read ``sample`` whole (image, ground truth, sizes): a warning about odd colours (or None),
    and whether any ground-truth pixel is inside the evaluation area."""
    image = read_image(sample.image)
    if sample.target is None:
        return None, False
    rgb = read_image(sample.target)
    if rgb.shape[:2] != image.shape[:2]:
        raise DataError(
            f"ground truth {sample.target} is {rgb.shape[1]}x{rgb.shape[0]} but image "
            f"{sample.image} is {image.shape[1]}x{image.shape[0]}"
        )
    odd = unexpected_colours(rgb)
    return (None if odd is None else f"{sample.target}: {odd}"), bool((rgb[..., 0] > 0).any())


def check_samples(
    samples: Sequence[Sample],
    threads: int = 4,
    evaluated: dict[str, Sequence[Sample]] | None = None,
) -> list[str]:
    """Read every file of ``samples`` before training.

    DataError for the first bad one, or for a set of ``evaluated`` (its description -> samples,
    all of them in ``samples``) whose ground truth has no pixel inside the evaluation area (no
    loss or metric can be computed on it); warnings for odd colours.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(_check_one, samples))
    judged = {s for s, (_, valid) in zip(samples, results) if valid}
    for what, group in (evaluated or {}).items():
        if group and not judged.intersection(group):
            raise DataError(
                f"{what}: no pixel of its {len(group)} ground-truth files (e.g. "
                f"{group[0].target}) is inside the evaluation area (all black or blue: red "
                "channel 0): no loss or metric can be computed on it"
            )
    return [w for w, _ in results if w is not None]


class KittiRoad(torch.utils.data.Dataset):
    """(image, target) pairs: RGB uint8 H x W x 3 and uint8 labels, then ``transforms``.

    The labels are None when unlabelled.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        transforms: Callable[[Any, Any], tuple[Any, Any]] | None = None,
    ):
        self.samples = list(samples)
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image, target = load_sample(self.samples[index])
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    @property
    def categories(self) -> list[str]:
        return sorted({s.category for s in self.samples})
