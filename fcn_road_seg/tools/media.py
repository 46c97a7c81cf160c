"""``fcn-road-segment``: street videos, images and cameras to overlays and masks, no ROS or bag.

    fcn-road-segment clip.mp4 -o out/clip         # overlay MP4, masks, contact sheet
    fcn-road-segment photos/ -o out/photos        # or a glob: 'photos/*.jpg'; or one image file
    fcn-road-segment 0 -o out/camera --show       # camera index 0, preview window, Ctrl-C to stop

Every frame goes through the same per-frame core as the node and ``segment_bag``
(``make_segmenter``), with the same model, backend, device, network-size and threshold options. The
output folder appears only when the run ends (it is built beside its name and renamed), never over
an existing one unless ``--overwrite``; a camera stopped with Ctrl-C keeps what it recorded, a file
run interrupted keeps nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from ..atomic import check_target, fsync_tree, temp_dir_for
from ..bounds import FPS
from ..errors import DataError, ImageError, run_cli
from .exports import OverlayExports, write_png
from ..image import IMAGE_SUFFIXES, MAX_PIXELS, Frame, read_image
from ..model import default_model_path
from ..segmenter import Segmenter, add_segmenter_arguments, segmenter_from_args

KITTI_STEM = re.compile(r"^(um|umm|uu)_(\d{6})$")
DEFAULT_FPS = 10.0
MAX_BAD_VIDEO_FRAMES = (
    25  # consecutive undecodable frames after which a video is taken to have ended
)
MAX_REASONS = 3  # reasons quoted when no frame at all could be segmented
MAX_CAMERA_INDEX = 9999


@dataclass
class Item:
    """One input frame: its index, output name stem, where it is from (for messages), the BGR
    pixels or why there are none."""

    index: int
    name: str
    where: str
    bgr: np.ndarray | None
    reason: str = ""


@dataclass
class Source:
    """Where frames come from: its description, frame count, rate and the frames.

    The frame count is None for a camera.
    """

    description: str
    total: int | None
    fps: float
    frames: Iterator[Item] = field(repr=False)
    live: bool = False
    still: bool = False
    paths: tuple[Path, ...] = ()  # the files read (for the output checks)


def image_files(spec: str) -> list[Path] | None:
    """The images a folder or glob names (sorted), or None when ``spec`` is neither.

    An existing path is taken as it is written, even with ``*?[`` in its name.
    """
    path = Path(spec)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not path.exists() and any(c in spec for c in "*?["):
        return sorted(Path(p) for p in glob.glob(spec) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
    return None


def check_unique_names(paths: Sequence[Path], name: Callable[[str], str] = str) -> None:
    """DataError naming two images whose outputs would share a name (``name`` of the file name
    without its suffix), before any work: one would overwrite the other."""
    seen: dict[str, Path] = {}
    for path in paths:
        if (other := seen.setdefault(name(path.stem), path)) is not path:
            raise DataError(
                f"{other} and {path} would both be written as {name(path.stem)}.png: outputs are "
                "named by the file name without its suffix (KITTI names get _road_ in "
                "confidence/); segment them in separate runs"
            )


def _read_images(paths: Sequence[Path], max_pixels: int) -> Iterator[Item]:
    for i, path in enumerate(paths):
        try:
            yield Item(i, path.stem, str(path), read_image(path, max_pixels))
        except ImageError as exc:
            yield Item(i, path.stem, str(path), None, str(exc))


def _rate(capture: cv2.VideoCapture, fps: float | None) -> float:
    """``fps`` if given, else the capture's own rate when it is a usable one, else the default."""
    own = capture.get(cv2.CAP_PROP_FPS)
    return fps or (own if FPS.problem(own) is None else DEFAULT_FPS)


def _read_video(capture: cv2.VideoCapture, spec: str, live: bool = False) -> Iterator[Item]:
    """Frames of an open capture until the decoder has none left, whatever the header's frame
    count says. An undecodable frame with a good one after it is listed, not fatal; a run of
    ``MAX_BAD_VIDEO_FRAMES`` failures is the end, and is not listed. A camera ends at its first
    failure."""
    index, pending = 0, []
    try:
        while len(pending) < MAX_BAD_VIDEO_FRAMES:
            ok, bgr = capture.read()
            where = f"{spec} frame {index}"
            if ok:
                yield from pending
                pending = []
                yield Item(index, f"{index:06d}", where, bgr)
            elif live:
                return
            else:
                pending.append(
                    Item(index, f"{index:06d}", where, None, f"{where} could not be decoded")
                )
            index += 1
    finally:
        capture.release()


def camera_index(spec: str) -> int | None:
    """The camera index ``spec`` names (ASCII digits that are not an existing file), else None."""
    if not re.fullmatch(r"[0-9]+", spec) or Path(spec).exists():
        return None
    if int(spec) > MAX_CAMERA_INDEX:
        raise DataError(f"camera index {spec} is out of range (0-{MAX_CAMERA_INDEX}), and no file")
    return int(spec)


def open_source(spec: str, fps: float | None = None, max_pixels: int = MAX_PIXELS) -> Source:
    """A camera index, an image file, a folder or glob of images, or a video file.

    DataError naming it. Images claiming more than ``max_pixels`` are listed, never decoded.
    """
    if (camera := camera_index(spec)) is not None:
        capture = cv2.VideoCapture(camera)
        if not capture.isOpened():
            raise DataError(f"cannot open camera {spec}")
        rate = _rate(capture, fps)
        return Source(
            f"camera {spec}", None, rate, _read_video(capture, f"camera {spec}", True), live=True
        )
    files = image_files(spec)
    if files is None and Path(spec).suffix.lower() in IMAGE_SUFFIXES:
        files = [Path(spec)] if Path(spec).is_file() else None
    if files is not None:
        if not files:
            raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {spec}")
        check_unique_names(files)
        return Source(
            f"{len(files)} images from {spec}",
            len(files),
            fps or DEFAULT_FPS,
            _read_images(files, max_pixels),
            still=True,
            paths=tuple(files),
        )
    if not Path(spec).is_file():
        raise DataError(f"input not found: {spec}")
    capture = cv2.VideoCapture(spec)
    if not capture.isOpened():
        raise DataError(f"cannot open video {spec} (not a video OpenCV can read, or corrupt)")
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    total = count if count > 0 else None
    rate = _rate(capture, fps)
    frames = f"{count} frames by its header" if total else "frame count unknown"
    return Source(
        f"video {spec} ({frames}, {rate:g} FPS)",
        total,
        rate,
        _read_video(capture, spec),
        paths=(Path(spec),),
    )


def confidence_name(name: str) -> str:
    """KITTI submission name for KITTI stems, else the stem itself.

    ``um_000012`` -> ``um_road_000012``.
    """
    match = KITTI_STEM.match(name)
    return f"{match.group(1)}_road_{match.group(2)}" if match else name


@dataclass
class Wanted:
    """Which outputs to write."""

    video: bool
    overlays: bool
    masks: bool
    confidence: bool
    sheet: bool


def wanted_outputs(args: argparse.Namespace, still_images: bool) -> Wanted:
    """The outputs asked for.

    None asked = overlay MP4 (or PNGs for still images), masks and the sheet.
    """
    chosen = Wanted(args.video, args.overlays, args.masks, args.confidence, args.contact_sheet)
    if any(vars(chosen).values()):
        return chosen
    return Wanted(not still_images, still_images, True, False, True)


def segment_source(
    source: Source,
    segmenter: Segmenter,
    out: Path,
    wanted: Wanted,
    strict: bool = False,
    show: bool = False,
    progress: bool = True,
) -> dict:
    """Segment every frame of ``source`` into the (new, temporary) folder ``out``.

    Returns a summary.
    """
    for sub, on in (("masks", wanted.masks), ("confidence", wanted.confidence)):
        if on:
            (out / sub).mkdir()
    skipped, frames, core_ms, start = [], 0, 0.0, time.perf_counter()
    with contextlib.ExitStack() as stack:
        exports = OverlayExports(
            stack,
            source.total,
            out / "overlay.mp4" if wanted.video else None,
            out / "overlays" if wanted.overlays else None,
            out / "contact_sheet.png" if wanted.sheet else None,
            source.fps,
        )
        bar = stack.enter_context(
            tqdm(
                source.frames,
                total=source.total,
                unit="frame",
                desc="segment",
                disable=not progress,
            )
        )
        try:
            for item in bar:
                try:
                    if item.bgr is None:
                        raise ImageError(item.reason)
                    result = segmenter.segment(Frame(item.bgr, "bgr8"))
                except ImageError as exc:
                    if strict:
                        raise DataError(f"{exc} (--strict)") from exc
                    item.reason = item.reason or f"{item.where}: {exc}"
                    skipped.append(item)
                    continue
                core_ms += result.timings["segment"]
                if wanted.masks:
                    write_png(out / "masks" / f"{item.name}.png", result.mask)
                if wanted.confidence:
                    write_png(
                        out / "confidence" / f"{confidence_name(item.name)}.png", result.confidence
                    )
                exports.add(item.index, f"#{item.index}  {item.name}", item.name, result.overlay)
                frames += 1
                if show:
                    cv2.imshow("fcn-road-segment (q to stop)", result.overlay)
                    if cv2.waitKey(1) & 0xFF == ord("q"):
                        break
        except KeyboardInterrupt:
            if not source.live:
                raise
        if frames == 0:
            reasons = [item.reason for item in skipped[:MAX_REASONS]]
            more = len(skipped) - len(reasons)
            raise DataError(
                f"none of the frames of {source.description} could be segmented: "
                + "; ".join(reasons or ["no frames"])
                + (f" (and {more} more)" if more > 0 else "")
            )
        exports.finish()
    seconds = time.perf_counter() - start
    return {
        "frames": frames,
        "seconds": seconds,
        "fps": frames / seconds,
        "core_ms": core_ms / frames,
        "skipped": skipped,
    }


def publish(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move the finished folder into place.

    With ``overwrite`` the old one goes only after the new one is in.
    """
    fsync_tree(tmp)
    if not (out.exists() or out.is_symlink()):
        os.replace(tmp, out)
        return
    if not overwrite:
        raise DataError(f"refusing to overwrite existing output: {out} (pass --overwrite)")
    old = out.with_name(f".{out.name}.{os.getpid()}.old.partial")  # a leftover if killed here
    os.replace(out, old)
    os.replace(tmp, out)
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old)
    else:
        old.unlink()


def check_not_an_input(out: Path, spec: str, paths: Sequence[Path]) -> None:
    """DataError when replacing ``out`` would delete the input or one of its files.

    Paths are compared as written and with links resolved (``out`` itself as a name: replacing a
    link replaces the link), so an input reached through a symlinked folder is found too.
    """
    absolute = Path(os.path.abspath(out))
    targets = {absolute, Path(os.path.realpath(absolute.parent)) / absolute.name}
    for path in (Path(spec), *paths):
        for inside in {Path(os.path.abspath(path)), Path(os.path.realpath(path))}:
            if targets & {inside, *inside.parents}:
                raise DataError(f"--overwrite would replace {out}, which holds the input {path}")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fcn-road-segment",
        description="Road masks and overlays for a video file, "
        "an image, a folder or glob of images, or a camera index; no ROS needed",
    )
    p.add_argument(
        "input", help="video file, image file, folder, glob ('dir/*.jpg') or camera index (0)"
    )
    p.add_argument(
        "-o", "--output", required=True, help="output folder (must not exist, unless --overwrite)"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing output folder once done"
    )
    p.add_argument(
        "--video", action="store_true", help="write overlay.mp4 at the input's frame rate"
    )
    p.add_argument("--overlays", action="store_true", help="write overlays/<name>.png")
    p.add_argument("--masks", action="store_true", help="write masks/<name>.png (0 / 255)")
    p.add_argument(
        "--confidence",
        action="store_true",
        help="write confidence/<name>.png (255 * P(road); KITTI names become <cat>_road_<id>.png)",
    )
    p.add_argument("--contact-sheet", action="store_true", help="write contact_sheet.png")
    p.add_argument(
        "--fps",
        type=FPS.parse,
        help="frame rate of the overlay MP4 (default: the input's, or 10)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first unreadable frame instead of listing it",
    )
    p.add_argument("--show", action="store_true", help="preview window (needs a display); q stops")
    add_segmenter_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> dict:
    """The command's body: returns the summary (after printing it)."""
    out = check_target(args.output, "--output")
    if (out.exists() or out.is_symlink()) and not args.overwrite:
        raise DataError(f"refusing to overwrite existing output: {out} (pass --overwrite)")
    if args.show and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise DataError("--show needs a display (DISPLAY is not set)")
    source = open_source(args.input, args.fps, args.max_pixels)
    if args.overwrite:
        check_not_an_input(out, args.input, source.paths)
    wanted = wanted_outputs(args, source.still)
    if wanted.confidence:
        check_unique_names(source.paths, confidence_name)
    segmenter = segmenter_from_args(args)
    print(
        f"{source.description}; model {args.model_path or default_model_path()}: "
        f"{segmenter.backend.describe()}"
    )
    tmp = temp_dir_for(out)
    try:
        summary = segment_source(
            source, segmenter, tmp, wanted, args.strict, args.show, not args.no_progress
        )
        publish(tmp, out, args.overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(
        f"wrote {out}: {summary['frames']} frames in {summary['seconds']:.1f} s = "
        f"{summary['fps']:.2f} FPS "
        f"(core {summary['core_ms']:.0f} ms/frame), "
        f"network at {segmenter.backend.network_size_text()}"
    )
    for item in summary["skipped"]:
        print(f"skipped frame #{item.index} ({item.name}): {item.reason}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(run, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
