"""The drivable-area grid: painted road lands in the right cells; real KITTI frames and calib."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from fcn_road_seg import geometry
from fcn_road_seg.tools.bags import camera_info, header
from fcn_road_seg.errors import OptionError
from fcn_road_seg.grid import (
    PICTURE_TICK,
    PICTURE_UNKNOWN,
    Camera,
    GridSpec,
    GroundGrid,
    grid_spec,
    mount,
    picture,
)
from fcn_road_seg.tools.kitti import CameraModel, read_calib

from conftest import distorted_pixel

HEIGHT, WIDTH, F, CAM_HEIGHT, PITCH = 480, 640, 500.0, 1.5, 0.05
P = np.array([[F, 0, WIDTH / 2, 0], [0, F, HEIGHT / 2, 0], [0, 0, 1, 0]])
ROAD = (5.0, 15.0, -2.0, 2.0)  # x from 5 to 15 m ahead, y from 2 m right to 2 m left


def painted_road_mask() -> np.ndarray:
    """255 where a pixel's ray meets the ground inside ROAD.

    Computed by ray casting (not through the homography).
    """
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH].astype(float)
    rays = np.stack([(u - WIDTH / 2) / F, (v - HEIGHT / 2) / F, np.ones_like(u)])
    ground_from_cam = np.linalg.inv(geometry.camera_from_mount(CAM_HEIGHT, PITCH, 0.0))
    d = np.tensordot(ground_from_cam[:3, :3], rays, axes=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(d[2] < 0, -CAM_HEIGHT / d[2], np.nan)
    x, y = t * d[0], t * d[1]
    inside = (x >= ROAD[0]) & (x <= ROAD[1]) & (y >= ROAD[2]) & (y <= ROAD[3])
    return np.where(inside, 255, 0).astype(np.uint8)


def make_grid(mode: str = "binary") -> GroundGrid:
    grid = GroundGrid(GridSpec(0.1, (0.0, 20.0), (-5.0, 5.0)), mode)
    grid.update(Camera(P, HEIGHT, WIDTH), geometry.camera_from_mount(CAM_HEIGHT, PITCH, 0.0))
    return grid


def test_painted_road_rectangle_lands_in_the_right_cells() -> None:
    grid = make_grid()
    mask = painted_road_mask()
    cells = grid.occupancy(mask, mask)
    x, y = grid.spec.cell_centres()
    assert cells.shape == (100, 200) and cells.dtype == np.int8
    known = cells != -1
    inner = (x > ROAD[0] + 0.2) & (x < ROAD[1] - 0.2) & (y > ROAD[2] + 0.2) & (y < ROAD[3] - 0.2)
    outer = (x < ROAD[0] - 0.2) | (x > ROAD[1] + 0.2) | (y < ROAD[2] - 0.2) | (y > ROAD[3] + 0.2)
    assert known[inner].all() and (cells[inner] == 0).all()
    assert (cells[outer & known] == 100).all() and (outer & known).sum() > 1000
    # ground nearer than where the image's lower edge looks (pitch + half the vertical field of
    # view) is not seen
    near = CAM_HEIGHT / np.tan(PITCH + np.arctan(HEIGHT / 2 / F))
    assert (cells[x < near - 0.1] == -1).all() and known[(x > near + 0.2) & (abs(y) < 1)].all()


def test_scaled_occupancy_is_100_times_one_minus_p() -> None:
    grid = make_grid("scaled")
    confidence = np.full((HEIGHT, WIDTH), 51, np.uint8)  # P = 0.2
    cells = grid.occupancy(np.zeros_like(confidence), confidence)
    assert set(np.unique(cells)) == {-1, 80}


def test_maps_are_rebuilt_only_when_camera_or_pose_change() -> None:
    grid = make_grid()
    grid.update(
        Camera(P.copy(), HEIGHT, WIDTH), geometry.camera_from_mount(CAM_HEIGHT, PITCH, 0.0)
    )
    assert grid.rebuilds == 1
    grid.update(
        Camera(P, HEIGHT, WIDTH), geometry.camera_from_mount(CAM_HEIGHT, PITCH + 0.01, 0.0)
    )
    assert grid.rebuilds == 2


def test_a_pose_that_is_not_finite_is_refused() -> None:
    """A NaN pose (from tf or code) gave an all-unknown grid without a word."""
    pose = geometry.camera_from_mount(CAM_HEIGHT, PITCH, 0.0)
    pose[2, 3] = float("nan")
    with pytest.raises(ValueError, match="the camera pose is not a finite 4x4 transform"):
        make_grid().update(Camera(P, HEIGHT, WIDTH), pose)


def test_frame_size_must_match_the_camera_info() -> None:
    grid = make_grid()
    with pytest.raises(ValueError, match="the frame is 320x240 but camera_info says 640x480"):
        grid.occupancy(np.zeros((240, 320), np.uint8), np.zeros((240, 320), np.uint8))
    with pytest.raises(ValueError, match="no camera_info received yet"):
        GroundGrid(GridSpec()).occupancy(
            np.zeros((240, 320), np.uint8), np.zeros((240, 320), np.uint8)
        )


def test_camera_from_a_camera_info_message_uses_p_or_else_k() -> None:
    k = P[:, :3].ravel()
    info = camera_info(
        header(0), CameraModel(k=k, r=np.eye(3).ravel(), p=P.ravel(), d=np.zeros(5)), WIDTH, HEIGHT
    )
    assert (
        np.array_equal(Camera.from_info(info).projection, P)
        and Camera.from_info(info).width == WIDTH
    )
    info.p = np.zeros(12)
    assert np.array_equal(Camera.from_info(info).projection, P)
    info.k = np.zeros(9)
    with pytest.raises(ValueError, match="no usable projection"):
        Camera.from_info(info)


def roi_info(binning: int, roi: tuple[int, int, int, int], d: Any = None) -> Any:
    """A CameraInfo of the 640x480 sensor, read out through ``roi`` (x, y, w, h) and binned."""
    cm = CameraModel(
        k=P[:, :3].ravel(), r=np.eye(3).ravel(), p=P.ravel(), d=np.zeros(5) if d is None else d
    )
    info = camera_info(header(0), cm, WIDTH, HEIGHT)
    info.binning_x = info.binning_y = binning
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = roi
    return info


def test_binning_and_roi_give_the_reduced_camera_as_image_geometry_does() -> None:
    """A 400x280 roi at (100, 200), binned 2x2: a 200x140 image, f 250 and the centre moved to
    ((320 - 100) / 2, (240 - 200) / 2) = (110, 20), by hand."""
    camera = Camera.from_info(roi_info(2, (100, 200, 400, 280)))
    assert (camera.width, camera.height) == (200, 140)
    assert camera.projection.tolist() == [[250, 0, 110, 0], [0, 250, 20, 0], [0, 0, 1, 0]]
    # binning 0 and an all-zero roi mean the whole sensor, as in sensor_msgs
    assert np.array_equal(Camera.from_info(roi_info(0, (0, 0, 0, 0))).projection, P)


def test_a_binned_cropped_image_lands_in_the_same_cells_as_the_full_one() -> None:
    """The ray-cast road mask cropped to the roi and binned 2x2 gives the cells the full frame
    gives, wherever the cropped frame sees the ground."""
    full = painted_road_mask()
    x0, y0, w, h = 80, 240, 480, 240
    reduced = full[y0 : y0 + h : 2, x0 : x0 + w : 2]
    grid = GroundGrid(GridSpec(0.1, (0.0, 20.0), (-5.0, 5.0)))
    grid.update(
        Camera.from_info(roi_info(2, (x0, y0, w, h))),
        geometry.camera_from_mount(CAM_HEIGHT, PITCH, 0.0),
    )
    cells = grid.occupancy(reduced, reduced)
    expected = make_grid().occupancy(full, full)
    x, y = grid.spec.cell_centres()
    road_edge = (abs(x - ROAD[0]) < 0.3) | (abs(x - ROAD[1]) < 0.3) | (abs(abs(y) - 2) < 0.3)
    seen = (cells != -1) & ~road_edge
    assert seen.sum() > 2000 and (cells[seen] == expected[seen]).all()
    with pytest.raises(ValueError, match="the frame is 640x480 but camera_info says 240x120"):
        grid.occupancy(full, full)


@pytest.mark.parametrize(
    "binning, roi, d, words",
    [
        (
            1,
            (600, 0, 100, 480),
            None,
            "camera_info roi 100x480 at \\(600, 0\\) does not lie inside",
        ),
        (1, (0, 0, 0, 10), None, "camera_info roi 0x10 at \\(0, 0\\) does not lie inside"),
        (8, (0, 0, 4, 480), None, "camera_info binning 8x8 leaves no pixel of the 4x480 roi"),
        (1, (0, 0, 320, 240), [-0.3, 0, 0, 0, 0], "the rectified roi is not supported"),
    ],
)
def test_an_unusable_roi_or_binning_says_why(binning: int, roi: tuple, d: Any, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Camera.from_info(roi_info(binning, roi, d), rectified=True)


# --- raw (distorted) images --------------------------------------------------------------------
K = P[:, :3]
#: a strongly distorted (barrel) lens of the 640x480 camera: sensor_msgs' plumb_bob k1 k2 p1 p2 k3
BARREL = [-0.3, 0.09, 0.002, -0.001, -0.01]


def raw_info(d: list[float], model: str = "plumb_bob") -> Any:
    """A CameraInfo of the 640x480 camera with distortion ``d``."""
    size = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}[model]
    cm = CameraModel(k=K.ravel(), r=np.eye(3).ravel(), p=P.ravel(), d=np.array(d, float)[:size])
    info = camera_info(header(0), cm, WIDTH, HEIGHT)
    info.distortion_model = model
    return info


#: near and wide, where the lens bends most: x from 2.5 to 6 m ahead, y from 3.5 m right to left
RAW_ROAD = (2.5, 6.0, -3.5, 3.5)


def painted_raw_road_mask(d: list[float]) -> np.ndarray:
    """RAW_ROAD seen by the distorted camera: dense ground points of it projected by the
    plumb_bob formula (conftest.distorted_pixel), their pixels painted, holes closed."""
    road = RAW_ROAD
    x, y = np.meshgrid(np.arange(road[0], road[1], 0.005), np.arange(road[2], road[3], 0.005))
    c, s = np.cos(PITCH), np.sin(PITCH)  # optical frame by hand: level X = -y, Y = h, Z = x
    X, Y, Z = -y, CAM_HEIGHT * c - x * s, x * c + CAM_HEIGHT * s
    u, v = distorted_pixel("plumb_bob", d, K, X, Y, Z)
    inside = (u > -0.5) & (u < WIDTH - 0.5) & (v > -0.5) & (v < HEIGHT - 0.5)
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[np.rint(v[inside]).astype(int), np.rint(u[inside]).astype(int)] = 255
    return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))


def test_a_raw_image_is_projected_through_its_distortion() -> None:
    """The road painted into the raw image of a barrel lens lands on its cells (within two
    cells); the same mask read as a rectified image (D ignored) does not."""
    mount = geometry.camera_from_mount(CAM_HEIGHT, PITCH, 0.0)
    mask = painted_raw_road_mask(BARREL)
    spec = GridSpec(0.1, (0.0, 20.0), (-5.0, 5.0))
    x, y = spec.cell_centres()
    road = RAW_ROAD
    inner = (x > road[0] + 0.2) & (x < road[1] - 0.2) & (y > road[2] + 0.2) & (y < road[3] - 0.2)
    outer = (x < road[0] - 0.2) | (x > road[1] + 0.2) | (y < road[2] - 0.2) | (y > road[3] + 0.2)
    wrong = {}
    for rectified in (False, True):
        grid = GroundGrid(spec)
        grid.update(Camera.from_info(raw_info(BARREL), rectified=rectified), mount)
        cells = grid.occupancy(mask, mask)
        known = cells != -1
        assert known[inner].sum() > 1500 and (outer & known).sum() > 1000
        wrong[rectified] = (cells[inner & known] != 0).sum() + (cells[outer & known] != 100).sum()
    assert wrong[False] == 0 and wrong[True] > 50


def test_a_cropped_raw_image_is_projected_through_the_lens_of_its_roi() -> None:
    """The barrel lens's raw mask cropped to a roi: the cells the uncropped raw frame gives."""
    mount = geometry.camera_from_mount(CAM_HEIGHT, PITCH, 0.0)
    full = painted_raw_road_mask(BARREL)
    spec = GridSpec(0.1, (0.0, 20.0), (-5.0, 5.0))
    x0, y0, w, h = 40, 200, 560, 280
    expected = GroundGrid(spec)
    expected.update(Camera.from_info(raw_info(BARREL)), mount)
    cropped = GroundGrid(spec)
    cropped.update(Camera.from_info(roi_info(1, (x0, y0, w, h), np.array(BARREL))), mount)
    cells = cropped.occupancy(full[y0 : y0 + h, x0 : x0 + w], full[y0 : y0 + h, x0 : x0 + w])
    seen = cells != -1
    assert seen.sum() > 2000
    assert (cells[seen] != expected.occupancy(full, full)[seen]).sum() <= 0.002 * seen.sum()


def test_no_distortion_or_a_rectified_image_gives_exactly_the_homography_grid() -> None:
    """D = 0 (or image_rectified) is today's grid: P's homography, to the bit."""
    mount = geometry.camera_from_mount(CAM_HEIGHT, PITCH, 0.0)
    spec = GridSpec(0.1, (0.0, 20.0), (-5.0, 5.0))
    today = geometry.lookup_maps(
        geometry.plane_homography(P, mount), *spec.cell_centres(), (HEIGHT, WIDTH)
    )
    for info, rectified in ((raw_info([0.0] * 5), False), (raw_info(BARREL), True)):
        camera = Camera.from_info(info, rectified=rectified)
        assert camera.lens is None
        grid = GroundGrid(spec)
        grid.update(camera, mount)
        for name in ("map_u", "map_v", "known"):
            np.testing.assert_array_equal(getattr(grid.maps, name), getattr(today, name))


def test_maps_are_rebuilt_only_when_the_distortion_changes() -> None:
    grid = GroundGrid(GridSpec(0.1, (0.0, 20.0), (-5.0, 5.0)))
    mount = geometry.camera_from_mount(CAM_HEIGHT, PITCH, 0.0)
    for d in (BARREL, list(BARREL), [0.0] * 5, BARREL, [-0.2, *BARREL[1:]]):
        grid.update(Camera.from_info(raw_info(d)), mount)
    assert grid.rebuilds == 4


@pytest.mark.parametrize(
    "model, d, message",
    [
        ("", BARREL, "distortion model '' is not supported"),
        ("plumb_bob", BARREL[:4], "'plumb_bob' needs 5 coefficients in D, got 4"),
    ],
)
def test_an_unusable_distortion_says_why(model: str, d: list[float], message: str) -> None:
    info = raw_info(BARREL)
    info.distortion_model, info.d = model, np.array(d, float)
    with pytest.raises(ValueError, match=message):
        Camera.from_info(info)
    assert Camera.from_info(info, rectified=True).lens is None


def test_the_grid_picture_is_seen_from_above_forward_up_left_left() -> None:
    """0.5 m cells over x 0..20 m and y -2..2 m: 8 rows (y) x 40 columns (x); the picture is
    40 rows (far x first) x 8 columns (left y first)."""
    spec = GridSpec(0.5, (0.0, 20.0), (-2.0, 2.0))
    cells = np.full(spec.shape, 100, np.int8)
    cells[0, 0] = 0  # nearest cell on the right (y -2..-1.5, x 0..0.5): road
    cells[7, 39] = -1  # farthest on the left: unseen
    cells[3, 5] = 50  # scaled: P(road) = 0.5
    pic = picture(cells, spec)
    assert pic.shape == (40, 8, 3) and pic.dtype == np.uint8
    assert pic[39, 7].tolist() == [255, 255, 255]
    assert pic[0, 0].tolist() == list(PICTURE_UNKNOWN)
    assert pic[39 - 5, 7 - 3].tolist() == [128, 128, 128]  # rint(255 - 127.5), half to even
    assert pic[1, 1].tolist() == [0, 0, 0]
    # a line across at x = 10 m: row (20 - 10) / 0.5
    assert (pic[20] == PICTURE_TICK).all() and (pic[[19, 21]] != PICTURE_TICK).any(axis=2).all()


def test_a_camera_info_too_wide_for_remap_is_refused() -> None:
    """cv2.remap takes at most 32766 pixels along a side: refused with the size, not an
    OpenCV assertion on every frame."""
    info = camera_info(
        header(0),
        CameraModel(k=P[:, :3].ravel(), r=np.eye(3).ravel(), p=P.ravel(), d=np.zeros(5)),
        32767,
        1024,
    )
    with pytest.raises(ValueError, match="camera_info size 32767x1024 is too large for the grid"):
        Camera.from_info(info)


def test_the_picture_ticks_a_grid_whose_range_is_not_a_whole_number_of_cells() -> None:
    """x 9.99..30 m in 0.1 m cells: 200 columns, x 9.99..29.99. The 10 m line falls in the
    nearest cell (the picture's last row), the 20 m line at the boundary 100 cells on (row 100,
    as the 10 m line of a 0..20 m grid lies at row 20)."""
    spec = GridSpec(0.1, (9.99, 30.0), (-1.0, 1.0))
    pic = picture(np.zeros(spec.shape, np.int8), spec)
    assert pic.shape == (200, 20, 3)
    ticks = np.flatnonzero((pic == PICTURE_TICK).all(axis=(1, 2)))
    assert ticks.tolist() == [100, 199]


@pytest.mark.parametrize(
    "index, value", [(10, -1.0), (10, 0.0), (0, float("nan")), (5, -500.0), (3, float("inf"))]
)
def test_a_camera_info_that_is_no_camera_is_refused(index: int, value: float) -> None:
    """P[2,2] = -1 put every cell behind the camera (all unknown); NaN or inf poisons them all."""
    p = P.ravel().copy()
    p[index] = value
    info = camera_info(
        header(0), CameraModel(k=P[:, :3].ravel(), r=np.eye(3).ravel(), p=p, d=np.zeros(5)), 8, 6
    )
    with pytest.raises(ValueError, match="no usable projection"):
        Camera.from_info(info)


def test_fields_describe_the_grid_for_occupancygrid() -> None:
    grid = make_grid()
    fields = grid.fields(np.zeros(grid.spec.shape, np.int8))
    assert (fields["width"], fields["height"], fields["resolution"]) == (200, 100, 0.1)
    assert fields["origin_xy"] == (0.0, -5.0)
    assert fields["data"].shape == (20000,)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((0.0, [0, 40], [-10, 10]), "resolution must be > 0"),
        ((0.05, (40, 0), (-10, 10)), "x range must be"),
        ((0.001, (0, 40), (-10, 10)), "too large"),
        ((100.0, (0, 40), (-10, 10)), "coarser than the grid .40 x 20 m.: it would have no cells"),
        ((float("inf"), (0, 40), (-10, 10)), "must be finite numbers"),
        ((0.05, (0, float("inf")), (-10, 10)), "must be finite numbers"),
        ((0.05, (0, 40), (-float("inf"), 10)), "must be finite numbers"),
        ((0.05, (0, 40), (float("nan"), 10)), "must be finite numbers"),
        ((1e-320, (0, 40), (-10, 10)), "too large"),
        # 8 million cells, but 40000 along x: more than cv2.remap takes along one side
        (
            (0.01, (0, 400), (-1, 1)),
            "a grid of 40000x200 cells is too long: each side may have at most 32766 cells",
        ),
        ((0.01, (-1000, 1000), (0, 0.05)), "a grid of 200000x5 cells is too long"),
    ],
)
def test_degenerate_grids_are_refused_with_the_reason(args: tuple, words: str) -> None:
    """A grid without cells, or one that overflows, never reaches cv2.remap."""
    with pytest.raises(ValueError, match=words):
        GridSpec(*args)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((0.05, [40, 0], [-10, 10]), "x range must be"),
        ((0.05, [0, 40, 1], [-10, 10]), "must be \\[min, max\\]"),
        ((0.0, [0, 40], [-10, 10]), r"grid_resolution must be a finite number in \[0.01, 10\] m"),
        ((100.0, [0, 40], [-10, 10]), r"grid_resolution .* got 100.0"),
        ((0.05, [0, float("inf")], [-10, 10]), r"grid_x_range .* got inf"),
        ((0.05, [0, 40], [-1e4, 10]), r"grid_y_range .* \[-1000, 1000\] m, got -10000.0"),
    ],
)
def test_bad_grid_options_name_the_option(args: tuple, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        grid_spec(*args)


@pytest.mark.parametrize(
    ("mount_args", "words"),
    [
        ((0.0, 0.0, 0.0), r"camera_height must be a finite number in \[0.01, 100\] m, got 0.0"),
        ((-1.65, 0.0, 0.0), r"camera_height .* got -1.65"),
        ((float("nan"), 0.0, 0.0), r"camera_height .* got nan"),
        ((1.65, float("inf"), 0.0), r"camera_pitch must be a finite number in \[-1.5, 1.5\] rad"),
        ((1.65, 0.0, -2.0), r"camera_roll .* got -2.0"),
        ((1.65, True, 0.0), r"camera_pitch .* got True"),
    ],
)
def test_bad_mounts_name_the_option(mount_args: tuple, words: str) -> None:
    """Height 0 would make every cell road, a negative one the sky the ground, NaN all unknown."""
    with pytest.raises(OptionError, match=words):
        mount(*mount_args)


def test_a_valid_mount_is_the_geometry_one() -> None:
    np.testing.assert_array_equal(
        mount(1.65, 0.1, -0.2), geometry.camera_from_mount(1.65, 0.1, -0.2)
    )


# --- real KITTI calibration ---------------------------------------------------------------------

CALIB = Path(__file__).parent / "data" / "um_000000_calib.txt"
#: KITTI's road frame (x right, y down, z forward) <- the grid's ROS ground frame
#: (x forward, y left, z up)
ROAD_FROM_GROUND = geometry.rigid(
    np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]), np.zeros(3)
)


def kitti_grid(spec: GridSpec) -> GroundGrid:
    """A grid on um_000000's real road plane: camera P2 @ R0_rect, pose from Tr_cam_to_road."""
    calib = read_calib(CALIB)
    r0 = np.eye(4)
    r0[:3, :3] = calib["R0_rect"].reshape(3, 3)
    road_from_cam = np.vstack([calib["Tr_cam_to_road"].reshape(3, 4), [0.0, 0.0, 0.0, 1.0]])
    grid = GroundGrid(spec)
    grid.update(
        Camera(calib["P2"].reshape(3, 4) @ r0, 375, 1242),
        np.linalg.inv(road_from_cam) @ ROAD_FROM_GROUND,
    )
    return grid


def test_grid_and_devkit_bev_agree_on_the_real_ground_truth(kitti_road_root: Path) -> None:
    """The node's grid and the devkit's view agree on um_000000's real labels.

    Two samplings through one homography: the grid's bilinear 0-based maps, the devkit's 1-based
    nearest pixels.
    """
    from fcn_road_seg.training import bev as devkit, data

    target = data.read_target(kitti_road_root / "training" / "gt_image_2" / "um_road_000000.png")
    road = np.where(target == 1, 255, 0).astype(np.uint8)
    # the devkit's view: x -10..10 m (right), z 6..46 m;
    # the same cells in the grid: x 6..46 m, y 10..-10 m
    cells = kitti_grid(GridSpec(0.05, (6.0, 46.0), (-10.0, 10.0))).occupancy(road, road)
    bev = devkit.KittiBev.from_file(CALIB, target.shape).transform(road, outside=127)
    as_bev = cells.T[::-1, ::-1]  # rows: far to near; columns: left (y = +10) to right
    seen = (as_bev != -1) & (bev != 127)
    assert seen.mean() > 0.5
    agree = ((as_bev == 0) == (bev == 255))[seen].mean()
    assert agree > 0.98, agree


def test_grid_on_a_shipped_kitti_frame_finds_the_road_ahead() -> None:
    """The default model on a real KITTI frame, real KITTI calibration: the lane ahead is free."""
    from fcn_road_seg.backends import load_backend
    from fcn_road_seg.image import Frame
    from fcn_road_seg.model import default_model_path

    from conftest import kitti_frame

    maps = load_backend(default_model_path(), "auto", "cpu").infer(
        Frame(kitti_frame("um_000005.png"), "bgr8")
    )
    grid = kitti_grid(GridSpec(0.1, (0.0, 40.0), (-10.0, 10.0)))
    cells = grid.occupancy(maps.mask, maps.confidence)
    x, y = grid.spec.cell_centres()
    ahead = (x > 8) & (x < 15) & (abs(y) < 1.0)
    assert (cells[ahead] == 0).mean() > 0.9
    assert (cells[x < 4] == -1).all()  # under the bonnet: out of view
    assert (cells == 100).any()
