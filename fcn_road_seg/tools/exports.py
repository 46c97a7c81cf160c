"""Overlay exports shared by ``segment_bag`` and ``fcn-road-segment``.

They are an MP4, PNG frames and a contact sheet.

Each export is written beside its final name and renamed into place only when the run succeeds.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..atomic import atomic_path
from ..bounds import FPS
from ..errors import DataError

SHEET_TILES, SHEET_COLUMNS, THUMB_WIDTH = 24, 4, 320
LIVE_TILE_EVERY = 10  # without a known frame count (a camera), one tile every this many frames


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Like ``atomic_path`` for a file, but the temporary path ends in ``target``'s suffix.

    The encoders need it.
    """
    with atomic_path(target) as tmp:
        staged = tmp.with_name(tmp.name + target.suffix)
        try:
            yield staged
            os.replace(staged, tmp)
        finally:
            staged.unlink(missing_ok=True)


def write_png(path: Path, image: np.ndarray) -> None:
    """Write ``image`` as a PNG; DataError naming the file when OpenCV cannot."""
    if not cv2.imwrite(str(path), image):
        raise DataError(f"cannot write {path}")


def to_bgr(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """H x W x 3 BGR for pixels of any supported encoding (for video and PNG export)."""
    code = {
        "rgb8": cv2.COLOR_RGB2BGR,
        "rgba8": cv2.COLOR_RGBA2BGR,
        "bgra8": cv2.COLOR_BGRA2BGR,
        "mono8": cv2.COLOR_GRAY2BGR,
    }.get(encoding)
    return cv2.cvtColor(pixels, code) if code is not None else pixels


def stamp_label(index: int, stamp_ns: int) -> str:
    """``#index  sec.nanosec`` for tiles and file names."""
    return f"#{index}  {stamp_ns // 10**9}.{stamp_ns % 10**9:09d}"


def thumbnail(bgr: np.ndarray, width: int = THUMB_WIDTH) -> np.ndarray:
    """``bgr`` scaled to ``width`` pixels wide, keeping the aspect ratio."""
    height = max(1, round(bgr.shape[0] * width / bgr.shape[1]))
    return cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """BGR ``right`` scaled to ``left``'s height, to the right of ``left``."""
    width = max(1, round(right.shape[1] * left.shape[0] / right.shape[0]))
    shrink = left.shape[0] < right.shape[0]
    scaled = cv2.resize(
        right,
        (width, left.shape[0]),
        interpolation=cv2.INTER_AREA if shrink else cv2.INTER_NEAREST,
    )
    return np.hstack([left, scaled])


def contact_sheet(
    tiles: list[tuple[str, np.ndarray]], columns: int = SHEET_COLUMNS, width: int = THUMB_WIDTH
) -> np.ndarray:
    """A grid of BGR images scaled to ``width``, each under its label on a dark band."""
    thumbs = []
    for label, pixels in tiles:
        band = np.zeros((22, width, 3), np.uint8)
        cv2.putText(
            band, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA
        )
        thumbs.append(np.vstack([band, thumbnail(pixels, width)]))
    cell_h = max(t.shape[0] for t in thumbs)
    columns = min(columns, len(thumbs))
    rows = -(-len(thumbs) // columns)
    sheet = np.full((rows * cell_h, columns * width, 3), 32, np.uint8)
    for i, thumb in enumerate(thumbs):
        r, c = divmod(i, columns)
        sheet[r * cell_h : r * cell_h + thumb.shape[0], c * width : (c + 1) * width] = thumb
    return sheet


class OverlayExports:
    """Optional overlay exports (MP4, PNG frames, contact sheet).

    Each is renamed into place on success.
    """

    def __init__(
        self,
        stack: contextlib.ExitStack,
        total: int | None,
        video: Path | None = None,
        frames_dir: Path | None = None,
        sheet: Path | None = None,
        fps: float = 10.0,
        columns: int = SHEET_COLUMNS,
        tile_width: int = THUMB_WIDTH,
    ) -> None:
        self.fps = FPS.check("video fps", fps)
        self.video_tmp = stack.enter_context(atomic_file(video)) if video else None
        self.frames_tmp = (
            stack.enter_context(atomic_path(frames_dir, directory=True)) if frames_dir else None
        )
        self.sheet_tmp = stack.enter_context(atomic_file(sheet)) if sheet else None
        if self.frames_tmp:
            self.frames_tmp.mkdir()
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.sheet_indices = (  # ascending; one not segmented passes its tile to the next
            list(range(0, LIVE_TILE_EVERY * SHEET_TILES, LIVE_TILE_EVERY))
            if total is None
            else sorted(
                set(np.linspace(0, total - 1, min(total, SHEET_TILES)).round().astype(int))
            )
        )
        self.tiles: list[tuple[str, np.ndarray]] = []
        self.columns, self.tile_width = columns, tile_width
        stack.callback(self.release)

    def add(
        self, index: int, label: str, name: str, bgr: np.ndarray, beside: np.ndarray | None = None
    ) -> None:
        """Export overlay frame ``index`` (PNG ``<name>.png``, tile ``label``).

        The video takes the first frame's size. ``beside`` (e.g. the grid's bird's-eye picture)
        goes to the right of the overlay in the contact sheet's tile. A frame at or after a tile's
        index that was never added (unreadable) takes that tile.
        """
        if self.video_tmp:
            self._video_frame(bgr)
        if self.frames_tmp:
            write_png(self.frames_tmp / f"{name}.png", bgr)
        if self.sheet_tmp and self.sheet_indices and self.sheet_indices[0] <= index:
            self.sheet_indices = [i for i in self.sheet_indices if i > index]
            tile = bgr if beside is None else side_by_side(bgr, beside)
            self.tiles.append((label, thumbnail(tile, self.tile_width)))

    def _video_frame(self, bgr: np.ndarray) -> None:
        """Append a frame to the MP4, opening it on the first frame."""
        if self.writer is None:
            self.size = (bgr.shape[1] // 2 * 2, bgr.shape[0] // 2 * 2)  # MPEG-4 wants even sizes
            self.writer = cv2.VideoWriter(
                str(self.video_tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size
            )
            if not self.writer.isOpened():
                raise DataError(
                    f"cannot open an MP4 writer (OpenCV FFmpeg, mp4v) for {self.video_tmp}"
                )
        if (bgr.shape[1], bgr.shape[0]) != self.size:
            bgr = cv2.resize(bgr, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(bgr)

    def finish(self) -> None:
        """Close the video and write the contact sheet (renames follow when the stack closes)."""
        self.release()
        if self.sheet_tmp and not self.tiles:
            raise DataError(f"no frame was added for the contact sheet {self.sheet_tmp}")
        if self.sheet_tmp:
            ok, png = cv2.imencode(
                ".png", contact_sheet(self.tiles, self.columns, self.tile_width)
            )
            if not ok:
                raise DataError(f"cannot encode the contact sheet for {self.sheet_tmp}")
            self.sheet_tmp.write_bytes(png.tobytes())

    def release(self) -> None:
        """Close the video writer (idempotent)."""
        if self.writer is not None:
            self.writer.release()
            self.writer = None
