"""The drivable-area grid: painted road lands in the right cells; real KITTI frames and calib."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fcn_road_seg import geometry
from fcn_road_seg.bags import camera_info, header
from fcn_road_seg.errors import OptionError
from fcn_road_seg.grid import Camera, GridSpec, GroundGrid, grid_spec, mount
from fcn_road_seg.kitti import CameraModel, read_calib

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
    from training import data

    target = data.read_target(kitti_road_root / "training" / "gt_image_2" / "um_road_000000.png")
    road = np.where(target == 1, 255, 0).astype(np.uint8)
    # the devkit's view: x -10..10 m (right), z 6..46 m;
    # the same cells in the grid: x 6..46 m, y 10..-10 m
    cells = kitti_grid(GridSpec(0.05, (6.0, 46.0), (-10.0, 10.0))).occupancy(road, road)
    bev = geometry.KittiBev.from_file(CALIB, target.shape).transform(road, outside=127)
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
