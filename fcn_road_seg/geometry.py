"""Camera over a flat ground plane, and the views built on it.

One homography maps ground cells to image pixels. The bird's-eye views built on it sample
image-sized maps through ``cv2.remap`` with lookup maps computed once per camera and pose: the
node's drivable-area grid (``grid.py``), in a ROS frame where the ground is z = 0, and the KITTI
devkit's view that evaluation uses (``training/bev.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


#: The optical frame's axes (x right, y down, z forward) expressed in a body frame
#: (x forward, y left, z up).
OPTICAL_IN_BODY = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def plane_homography(
    projection: np.ndarray, cam_from_plane: np.ndarray, axes: tuple[int, int] = (0, 1)
) -> np.ndarray:
    """3x3 H with (u, v, w) = H (a, b, 1) for a point on the plane.

    The point's ``axes`` coordinates are a and b (others 0). ``projection`` is a 3x4 camera matrix
    (CameraInfo P, KITTI P2 @ R0_rect), ``cam_from_plane`` the 4x4 transform from the plane's frame
    to the camera's.
    """
    full = np.asarray(projection, np.float64).reshape(3, 4) @ np.asarray(
        cam_from_plane, np.float64
    ).reshape(4, 4)
    return full[:, [axes[0], axes[1], 3]]


def project(
    homography: np.ndarray, a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image coordinates (u, v) and depth sign w of plane points (a, b) through ``homography``."""
    uvw = np.tensordot(homography, np.stack([a, b, np.ones_like(a)]), axes=1)
    w = uvw[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return uvw[0] / w, uvw[1] / w, w


def rotation_from_quaternion(x: float, y: float, z: float, w: float) -> np.ndarray:
    """The 3x3 rotation of a (not necessarily unit) quaternion, as in geometry_msgs/Quaternion."""
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if not n > 0:
        raise ValueError("a zero quaternion is not a rotation")
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def rigid(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """The 4x4 transform [R t; 0 1]."""
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = rotation, translation
    return out


def camera_from_mount(height: float, pitch: float, roll: float) -> np.ndarray:
    """4x4 optical-camera <- ground transform for a camera ``height`` m over the ground.

    The camera is pitched and rolled.

    The ground frame is ROS body convention (x forward, y left, z up) with its origin on the ground
    under the camera; positive ``pitch`` (rad) tilts the camera down, positive ``roll`` turns it
    clockwise as seen from behind.
    """
    cp, sp, cr, sr = math.cos(pitch), math.sin(pitch), math.cos(roll), math.sin(roll)
    r_pitch = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    r_roll = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
    ground_from_camera = rigid(r_pitch @ r_roll @ OPTICAL_IN_BODY, np.array([0.0, 0.0, height]))
    return np.linalg.inv(ground_from_camera)


@dataclass
class LookupMaps:
    """cv2.remap maps from a grid's cells into an image of ``image_size`` (H, W).

    ``known`` = cell is in view.
    """

    map_u: np.ndarray
    map_v: np.ndarray
    known: np.ndarray
    image_size: tuple[int, int]

    def sample(self, image: np.ndarray, interpolation: int, outside: float = 0) -> np.ndarray:
        """``image`` (H x W, this map's size) at every cell; cells out of view get ``outside``."""
        if image.shape[:2] != self.image_size:
            raise ValueError(
                f"image is {image.shape[1]}x{image.shape[0]}, the maps were made for "
                f"{self.image_size[1]}x{self.image_size[0]}"
            )
        return cv2.remap(
            image,
            self.map_u,
            self.map_v,
            interpolation,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=outside,
        )


def lookup_maps(
    homography: np.ndarray, a: np.ndarray, b: np.ndarray, image_size: tuple[int, int]
) -> LookupMaps:
    """Maps for bilinear sampling at the projections of plane points (a, b), 0-based pixel centres.

    A cell is known when it lies in front of the camera and its projection falls on the image.
    """
    u, v, w = project(homography, a, b)
    return pixel_maps(u, v, w > 0, image_size)


def pixel_maps(
    u: np.ndarray, v: np.ndarray, seen: np.ndarray, image_size: tuple[int, int]
) -> LookupMaps:
    """LookupMaps at pixels (u, v); a cell is known where ``seen`` and (u, v) is on the image."""
    height, width = image_size
    with np.errstate(invalid="ignore"):
        known = seen & (u >= -0.5) & (u <= width - 0.5) & (v >= -0.5) & (v <= height - 0.5)
    map_u = np.where(known, np.clip(u, 0, width - 1), -1).astype(np.float32)
    map_v = np.where(known, np.clip(v, 0, height - 1), -1).astype(np.float32)
    return LookupMaps(map_u, map_v, known, (height, width))


#: sensor_msgs/CameraInfo distortion models and the number of coefficients D holds for each
DISTORTION_MODELS = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}
MAX_RADIUS = 20.0  # tan(87 degrees): the widest ray a distorted pinhole model is trusted with


@dataclass(frozen=True)
class Lens:
    """A raw (unrectified) camera: intrinsics K (3x3), distortion D and its CameraInfo model.

    ``plumb_bob`` (k1 k2 p1 p2 k3) and ``rational_polynomial`` (k1 k2 p1 p2 k3 k4 k5 k6) project
    with ``cv2.projectPoints``, ``equidistant`` (k1 k2 k3 k4, fisheye) with
    ``cv2.fisheye.projectPoints``.
    """

    k: np.ndarray
    d: np.ndarray
    model: str

    def __post_init__(self) -> None:
        if self.model not in DISTORTION_MODELS:
            raise ValueError(
                f"camera_info distortion model '{self.model}' is not supported; "
                f"use one of {', '.join(DISTORTION_MODELS)} (or D = 0 for a rectified image)"
            )
        if self.d.size != DISTORTION_MODELS[self.model]:
            raise ValueError(
                f"camera_info distortion model '{self.model}' needs "
                f"{DISTORTION_MODELS[self.model]} coefficients in D, got {self.d.size}"
            )
        k = self.k
        if not np.isfinite(self.d).all():
            raise ValueError(f"camera_info D has a value that is not finite: {self.d.tolist()}")
        if not (np.isfinite(k).all() and k[0, 0] > 0 < k[1, 1]):
            raise ValueError(
                "camera_info has distortion but no usable K (not finite, or fx, fy <= 0)"
            )

    def project(self, points: np.ndarray) -> np.ndarray:
        """N x 2 raw-image pixels of N x 3 points in the camera's optical frame (z > 0)."""
        zero = np.zeros(3)
        if self.model == "equidistant":
            uv, _ = cv2.fisheye.projectPoints(points[:, None], zero, zero, self.k, self.d)
        else:
            uv, _ = cv2.projectPoints(points, zero, zero, self.k, self.d)
        return uv.reshape(-1, 2)

    def fold_radius(self) -> float:
        """The normalised radius r = |(x/z, y/z)| up to which the radial distortion grows with r.

        Past it the model folds back and would put points from outside the view on the image.
        At most ``MAX_RADIUS`` for the pinhole models (87 degrees off the axis), and 90 degrees
        for the fisheye.
        """
        d = self.d
        if self.model == "equidistant":
            theta = np.linspace(0.0, math.pi / 2, 20001)[:-1]
            t2 = theta * theta
            grows = theta * (1 + t2 * (d[0] + t2 * (d[1] + t2 * (d[2] + t2 * d[3]))))
            radius = np.tan(theta)
        else:
            radius = np.linspace(0.0, MAX_RADIUS, 20001)
            r2 = radius * radius
            k = np.concatenate([d[[0, 1, 4]], d[5:8] if d.size == 8 else np.zeros(3)])
            numerator = 1 + r2 * (k[0] + r2 * (k[1] + r2 * k[2]))
            denominator = 1 + r2 * (k[3] + r2 * (k[4] + r2 * k[5]))
            with np.errstate(divide="ignore", invalid="ignore"):
                grows = radius * numerator / denominator
        falls = np.flatnonzero(~(np.diff(grows) > 0))
        return float(radius[falls[0]]) if falls.size else float(radius[-1])


def lens_lookup_maps(
    lens: Lens,
    cam_from_plane: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    image_size: tuple[int, int],
) -> LookupMaps:
    """Maps for bilinear sampling of a raw image at the projections of ground points (a, b, 0).

    The points go through the 4x4 ``cam_from_plane`` and ``lens``; a cell is known when it lies in
    front of the camera, inside the radius where the distortion model is monotonic, and its
    projection falls on the image.
    """
    ones = np.ones_like(a)
    xyz = np.tensordot(
        np.asarray(cam_from_plane, np.float64)[:3], np.stack([a, b, 0 * a, ones]), axes=1
    )
    front = xyz[2] > 1e-9
    with np.errstate(divide="ignore", invalid="ignore"):
        radius = np.where(front, np.hypot(xyz[0], xyz[1]) / xyz[2], np.inf)
    seen = front & (radius < lens.fold_radius())
    u, v = np.full(a.shape, np.nan), np.full(a.shape, np.nan)
    if seen.any():
        u[seen], v[seen] = lens.project(xyz[:, seen].T).T
    return pixel_maps(u, v, seen, image_size)
