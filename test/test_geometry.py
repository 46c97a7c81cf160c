"""Ground-plane homographies, camera mounts and the KITTI devkit's bird's-eye view.

All against hand-computed cells.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from fcn_road_seg import geometry
from fcn_road_seg.training import bev as devkit
from fcn_road_seg.errors import DataError
from fcn_road_seg.tools.kitti import read_calib

from conftest import distorted_pixel, level_road_calib

# the real KITTI Road calibration of um_000000
CALIB = Path(__file__).parent / "data" / "um_000000_calib.txt"
K = np.array([[500.0, 0.0, 320.0, 0.0], [0.0, 500.0, 240.0, 0.0], [0.0, 0.0, 1.0, 0.0]])


def test_level_camera_projects_ground_points_by_hand() -> None:
    h = geometry.plane_homography(K, geometry.camera_from_mount(1.5, 0.0, 0.0))
    u, v, w = geometry.project(h, np.array([10.0, 10.0, 20.0]), np.array([0.0, 2.0, -4.0]))
    # u = cx - f y / x (y is to the left), v = cy + f height / x
    np.testing.assert_allclose(u, [320.0, 320.0 - 500 * 2 / 10, 320.0 + 500 * 4 / 20])
    np.testing.assert_allclose(v, [240.0 + 500 * 1.5 / 10, 315.0, 240.0 + 500 * 1.5 / 20])
    assert (w > 0).all()


def test_pitch_down_puts_the_principal_point_on_the_ground_at_height_over_tan_pitch() -> None:
    pitch = 0.1
    h = geometry.plane_homography(K, geometry.camera_from_mount(1.5, pitch, 0.0))
    u, v, _ = geometry.project(h, np.array([1.5 / math.tan(pitch)]), np.array([0.0]))
    np.testing.assert_allclose([u[0], v[0]], [320.0, 240.0], atol=1e-9)


def test_positive_roll_lowers_the_right_side_so_right_ground_points_rise_in_the_image() -> None:
    h = geometry.plane_homography(K, geometry.camera_from_mount(1.5, 0.0, 0.05))
    _, v, _ = geometry.project(h, np.array([10.0, 10.0]), np.array([3.0, -3.0]))
    assert v[1] < v[0] - 10


def test_points_behind_the_camera_are_not_known() -> None:
    h = geometry.plane_homography(K, geometry.camera_from_mount(1.5, 0.0, 0.0))
    maps = geometry.lookup_maps(h, np.array([[-5.0, 5.0]]), np.array([[0.0, 0.0]]), (480, 640))
    assert maps.known.tolist() == [[False, True]]
    assert maps.map_u[0, 0] == -1


def test_quaternion_rotation_matches_a_known_rotation() -> None:
    s = math.sqrt(0.5)  # 90 degrees about z
    np.testing.assert_allclose(
        geometry.rotation_from_quaternion(0, 0, s, s),
        [[0, -1, 0], [1, 0, 0], [0, 0, 1]],
        atol=1e-12,
    )
    with pytest.raises(ValueError, match="zero quaternion"):
        geometry.rotation_from_quaternion(0, 0, 0, 0)


def test_devkit_bev_shape_and_cell_centres() -> None:
    params = devkit.BevParams()
    x, z = params.cell_centres()
    assert params.shape == (800, 400) == x.shape
    assert x[0, 0] == pytest.approx(-9.975) and z[0, 0] == pytest.approx(45.975)
    assert x[-1, -1] == pytest.approx(9.975) and z[-1, -1] == pytest.approx(6.025)


def test_kitti_bev_takes_the_devkit_pixel_on_a_synthetic_calibration() -> None:
    height, width = 375, 1242
    bev = devkit.KittiBev(devkit.kitti_road_homography(level_road_calib()), (height, width))
    # every pixel its own value
    index = np.arange(height * width, dtype=np.float32).reshape(height, width)
    out = bev.transform(index, outside=-1)
    for row, col in [(799, 200), (799, 0), (0, 399), (400, 123)]:
        x, z = -10 + 0.025 + 0.05 * col, 46 - 0.025 - 0.05 * row
        # 1-based in the devkit: pixel (floor(v) - 1, floor(u) - 1)
        u, v = (600 + 700 * x / z, 180 + 700 * 1.6 / z)
        if 1 <= u <= width and 1 <= v <= height:
            assert out[row, col] == (math.floor(v) - 1) * width + math.floor(u) - 1, (row, col)
        else:
            assert out[row, col] == -1, (row, col)
    # the near edge at z = 6.025 m is v = 180 + 700 * 1.6 / 6.025 = 365.9: in view; at 1.6 m height
    # nothing is cut
    assert bev.maps.known[799, 200] and not bev.maps.known[799, 0]


def test_kitti_bev_matches_the_devkit_formula_on_the_real_calibration() -> None:
    calib = read_calib(CALIB)
    p2 = calib["P2"].reshape(3, 4)
    r0 = np.eye(4)
    r0[:3, :3] = calib["R0_rect"].reshape(3, 3)
    tr = np.vstack([calib["Tr_cam_to_road"].reshape(3, 4), [0, 0, 0, 1]])
    tr33 = (p2 @ r0 @ np.linalg.inv(tr))[:, [0, 2, 3]]  # the devkit's KittiCalibration.setup
    bev = devkit.KittiBev.from_file(CALIB, (375, 1242))
    rng = np.random.default_rng(0)
    for row, col in zip(rng.integers(0, 800, 200), rng.integers(0, 400, 200)):
        x, z = np.float32(-10 + 0.025 + 0.05 * col), np.float32(46 - 0.025 - 0.05 * row)
        u, v, w = tr33 @ [x, z, 1.0]
        u, v = u / w, v / w
        if 1 <= u <= 1242 and 1 <= v <= 375:
            assert (bev.maps.map_u[row, col], bev.maps.map_v[row, col]) == (
                math.floor(u) - 1,
                math.floor(v) - 1,
            )
        else:
            assert not bev.maps.known[row, col]
    # KITTI's camera is 1.65 m high, looking level: 6.5 m ahead is near the bottom row, 46 m just
    # under the horizon
    assert bev.maps.map_v[790, 200] > 360 and 190 < bev.maps.map_v[0, 200] < 210


def test_kitti_bev_of_the_real_ground_truth_has_the_road_ahead(kitti_road_root: Path) -> None:
    from fcn_road_seg.training import data

    sample = next(s for s in data.list_samples(kitti_road_root) if s.stem == "um_000000")
    target = data.read_target(sample.target)
    bev = devkit.KittiBev.from_file(CALIB, target.shape).transform(
        target, outside=data.IGNORE_INDEX
    )
    road, valid = bev == 1, bev != data.IGNORE_INDEX
    assert road[700:, 190:210].mean() > 0.95  # 7 to 11 m straight ahead
    assert valid.mean() > 0.5 and road[valid].mean() > 0.2


def test_incomplete_calibration_names_the_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "um_000001.txt"
    bad.write_text(CALIB.read_text().replace("Tr_cam_to_road:", "Tr_cam_to_road_x:"))
    with pytest.raises(
        DataError, match=r"um_000001\.txt: 'Tr_cam_to_road' must hold 12 numbers \(missing\)"
    ):
        devkit.KittiBev.from_file(bad, (375, 1242))


# --------------------------------------------------------------------------- distorted lenses
#: a wide, strongly distorted 640x480 camera 1.5 m over the ground, pitched 0.2 rad down
SIZE, HEIGHT, PITCH = (480, 640), 1.5, 0.2
WIDE = np.array([[300.0, 0.0, 318.5], [0.0, 305.0, 241.25], [0.0, 0.0, 1.0]])
LENSES = {
    "plumb_bob": [-0.32, 0.11, 0.004, -0.003, -0.015],
    "rational_polynomial": [1.4, 0.3, 0.002, 0.001, 0.01, 1.9, 0.6, 0.05],
    "equidistant": [-0.06, 0.012, -0.004, 0.0006],
}
#: ground points (x forward, y left) at cell centres of a 0.1 m grid over x 0..20, y -5..5
POINTS = [(3.05, 1.45), (6.05, -2.05), (10.05, 0.05), (15.05, 3.95), (2.55, -2.95)]


def camera_point(x: float, y: float) -> tuple[float, float, float]:
    """The optical-frame coordinates of ground point (x, y), by hand: level X = -y, Y = h, Z = x,
    then pitched down by PITCH about the optical x axis."""
    c, s = math.cos(PITCH), math.sin(PITCH)
    return -y, HEIGHT * c - x * s, x * c + HEIGHT * s


def by_hand(model: str, d: list[float], point: tuple[float, float, float]) -> tuple[float, float]:
    """The raw pixel of a camera-frame point of WIDE (``distorted_pixel``)."""
    u, v = distorted_pixel(model, d, WIDE, *(np.float64(c) for c in point))
    return float(u), float(v)


@pytest.mark.parametrize("model", list(LENSES))
def test_distorted_maps_hit_hand_computed_pixels_of_known_ground_points(model: str) -> None:
    lens = geometry.Lens(WIDE, np.array(LENSES[model]), model)
    x = 0.05 + 0.1 * np.arange(200)
    y = -4.95 + 0.1 * np.arange(100)
    xx, yy = np.meshgrid(x, y)
    maps = geometry.lens_lookup_maps(
        lens, geometry.camera_from_mount(HEIGHT, PITCH, 0.0), xx, yy, SIZE
    )
    for gx, gy in POINTS:
        u, v = by_hand(model, LENSES[model], camera_point(gx, gy))
        row, col = round((gy + 4.95) / 0.1), round((gx - 0.05) / 0.1)
        assert 0 <= u < 640 and 0 <= v < 480, (gx, gy)  # the points are in view
        assert maps.known[row, col]
        np.testing.assert_allclose([maps.map_u[row, col], maps.map_v[row, col]], [u, v], atol=1e-3)
        # and the cell that looks nearest at that pixel is the point's own, within one cell
        gap = np.hypot(maps.map_u - u, maps.map_v - v)
        gap[~maps.known] = np.inf
        near_row, near_col = np.unravel_index(np.argmin(gap), gap.shape)
        assert abs(near_row - row) <= 1 and abs(near_col - col) <= 1, (gx, gy)
    assert not maps.known[np.abs(y) < 0.5][:, x < 0.5].any()  # just ahead: below the image
    # strongly distorted: somewhere the lens moves a point by more than 20 pixels
    pinhole = [by_hand("plumb_bob", [0.0] * 5, camera_point(*p)) for p in POINTS]
    bent = [by_hand(model, LENSES[model], camera_point(*p)) for p in POINTS]
    assert max(math.dist(a, b) for a, b in zip(pinhole, bent)) > 20


def test_the_distortion_model_is_trusted_only_where_it_grows() -> None:
    """k1 = -0.5 alone: r_d = r (1 - 0.5 r^2) peaks at r = sqrt(2/3); a point at r = 1.2 would be
    folded back to r_d = 0.336, onto the image, and is unknown instead."""
    lens = geometry.Lens(WIDE, np.array([-0.5, 0.0, 0.0, 0.0, 0.0]), "plumb_bob")
    assert lens.fold_radius() == pytest.approx(math.sqrt(2 / 3), abs=2e-3)
    level = geometry.camera_from_mount(HEIGHT, 0.0, 0.0)
    # ground point 1.25 m ahead, 0 m aside: Y / Z = 1.5 / 1.25 = 1.2
    folded = lens.project(np.array([[0.0, HEIGHT, 1.25]]))[0]
    assert 0 <= folded[1] < 480  # where the folded model would put it
    maps = geometry.lens_lookup_maps(
        lens, level, np.array([[1.25, 5.0]]), np.array([[0.0, 0.0]]), SIZE
    )
    assert maps.known.tolist() == [[False, True]]


@pytest.mark.parametrize(
    "model, d, message",
    [
        ("fisheye", [0.1, 0, 0, 0], "distortion model 'fisheye' is not supported; use one of"),
        ("plumb_bob", [0.1, 0, 0, 0], "'plumb_bob' needs 5 coefficients in D, got 4"),
        ("equidistant", [0.1] * 5, "'equidistant' needs 4 coefficients in D, got 5"),
        ("rational_polynomial", [0.1] * 5, "needs 8 coefficients in D, got 5"),
    ],
)
def test_unusable_lenses_say_why(model: str, d: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        geometry.Lens(WIDE, np.array(d, float), model)
    with pytest.raises(ValueError, match="no usable K"):
        geometry.Lens(np.zeros((3, 3)), np.array(LENSES["plumb_bob"]), "plumb_bob")
    with pytest.raises(
        ValueError, match=r"camera_info D has a value that is not finite: \[0.1, nan"
    ):
        geometry.Lens(WIDE, np.array([0.1, np.nan, 0, 0, 0]), "plumb_bob")


def _spoiled(key: str, index: int | None, value: float) -> dict:
    calib = level_road_calib()
    calib[key] = calib[key].copy()
    if index is None:
        calib[key][:] = value
    else:
        calib[key][index] = value
    return calib


@pytest.mark.parametrize(
    "key, index, value, words",
    [
        ("Tr_cam_to_road", None, 0.0, "'Tr_cam_to_road' does not hold a rotation"),
        ("Tr_cam_to_road", 3, float("inf"), "'Tr_cam_to_road' holds numbers that are not finite"),
        ("P2", 5, float("nan"), "'P2' holds numbers that are not finite"),
        ("P2", None, 0.0, "'P2' is not a camera (fx, fy or P2[2,2] is not positive)"),
        ("P2", 10, -1.0, "'P2' is not a camera"),
        ("R0_rect", 0, 2.0, "'R0_rect' does not hold a rotation"),
    ],
)
def test_a_calibration_that_is_no_camera_names_the_file_and_key(
    key: str, index: int | None, value: float, words: str
) -> None:
    """An all-zero Tr_cam_to_road raised LinAlgError; NaN in P2 dropped the frame silently, inf
    in Tr gave a wrong cell count, an all-zero P2 a view of nothing."""
    with pytest.raises(DataError) as info:
        devkit.kitti_road_homography(_spoiled(key, index, value), "calib/um_000007.txt")
    assert str(info.value).startswith(f"calib/um_000007.txt: {words}")
