"""training/data.py and training/transforms.py.

KITTI Road layout, ground-truth colours, splits, paired transforms.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fcn_road_seg.errors import DataError
from fcn_road_seg.training import data
from fcn_road_seg.training import transforms as T

RGB = {"road": (255, 0, 255), "nonroad": (255, 0, 0), "ignore": (0, 0, 0)}


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def gt_rgb(labels: np.ndarray) -> np.ndarray:
    """Labels 0/1/255 -> KITTI colours."""
    out = np.zeros((*labels.shape, 3), np.uint8)
    out[labels == 1] = RGB["road"]
    out[labels == 0] = RGB["nonroad"]
    return out


def make_road(
    root: Path, stems: list[str], size: tuple[int, int] = (12, 20), testing: tuple[str, ...] = ()
) -> Path:
    """A tiny data_road folder: random images, ground truth with all three labels."""
    rng = np.random.default_rng(0)
    for stem in stems:
        write_rgb(
            root / "training" / "image_2" / f"{stem}.png",
            rng.integers(0, 256, (*size, 3), dtype=np.uint8),
        )
        labels = rng.choice(np.array([0, 1, 255], np.uint8), size)
        write_rgb(root / "training" / "gt_image_2" / data.gt_name(stem), gt_rgb(labels))
    for stem in testing:
        write_rgb(
            root / "testing" / "image_2" / f"{stem}.png",
            rng.integers(0, 256, (*size, 3), dtype=np.uint8),
        )
    return root


# --- real data -----------------------------------------------------------------------------------


def test_camvid_layout_and_official_splits(camvid_root: Path) -> None:
    samples = data.list_samples(camvid_root)
    assert len(samples) == 468
    assert {s.category for s in samples} == {"0001TP", "0006R0", "0016E5"}
    assert [s.stem for s in samples] == sorted(s.stem for s in samples)
    train = data.split(camvid_root, "train", camvid_root / "train.txt")
    val = data.split(camvid_root, "val", camvid_root / "val.txt")
    assert (len(train), len(val)) == (367, 101)
    assert not {s.stem for s in train} & {s.stem for s in val}
    assert val[0].stem == "0016E5_07959" and val[0].target.name == "0016E5_road_07959.png"


@pytest.mark.parametrize("index", [0, 200, 467])
def test_camvid_ground_truth_decoding_matches_colours(camvid_root: Path, index: int) -> None:
    sample = data.list_samples(camvid_root)[index]
    image, labels = data.load_sample(sample)
    bgr_gt = cv2.imread(str(sample.target))
    count = {name: int((bgr_gt == rgb[::-1]).all(-1).sum()) for name, rgb in RGB.items()}
    assert labels.shape == image.shape[:2] == (360, 480) and labels.dtype == np.uint8
    assert int((labels == 1).sum()) == count["road"] > 0
    assert int((labels == 0).sum()) == count["nonroad"] > 0
    assert int((labels == 255).sum()) == count["ignore"]
    assert sum(count.values()) == labels.size
    assert np.array_equal(image, cv2.imread(str(sample.image))[..., ::-1])  # RGB, not BGR


def test_seeded_split_is_deterministic_per_category(camvid_root: Path) -> None:
    samples = data.list_samples(camvid_root)
    train, val = data.seeded_split(samples, 0.25, seed=3)
    again = data.seeded_split(list(reversed(samples)), 0.25, seed=3)
    assert [s.stem for s in val] == [s.stem for s in again[1]]
    assert sorted(s.stem for s in train + val) == [s.stem for s in samples]
    for cat, n in {"0001TP": 62, "0006R0": 101, "0016E5": 305}.items():
        assert sum(s.category == cat for s in samples) == n
        assert sum(s.category == cat for s in val) == round(n * 0.25)
    # A category's split does not depend on the other categories.
    alone = data.seeded_split([s for s in samples if s.category == "0006R0"], 0.25, seed=3)[1]
    assert [s.stem for s in alone] == [s.stem for s in val if s.category == "0006R0"]
    assert [s.stem for s in data.seeded_split(samples, 0.25, seed=4)[1]] != [s.stem for s in val]


# --- synthetic layouts and bad data --------------------------------------------------------------


def test_layout_lane_files_and_testing_images(tmp_path: Path) -> None:
    root = make_road(
        tmp_path, ["um_000000", "umm_000003", "uu_000010"], testing=("uu_000001", "um_000002")
    )
    write_rgb(
        root / "training" / "gt_image_2" / "um_lane_000000.png", np.zeros((12, 20, 3), np.uint8)
    )
    samples = data.list_samples(root)
    assert [(s.stem, s.category) for s in samples] == [
        ("um_000000", "um"),
        ("umm_000003", "umm"),
        ("uu_000010", "uu"),
    ]
    assert samples[0].target == root / "training" / "gt_image_2" / "um_road_000000.png"
    assert [s.stem for s in data.testing_samples(root)] == ["um_000002", "uu_000001"]
    assert data.testing_samples(root)[0].target is None
    dataset = data.KittiRoad(data.testing_samples(root), T.Compose([T.ToTensor()]))
    image, target = dataset[0]
    assert image.shape == (3, 12, 20) and target is None


def test_devkit_channel_rule_pixel_by_pixel() -> None:
    """valid = red > 0, road = blue > 0: each colour against its hand-derived label."""
    # odd colours
    colours = np.array(
        [
            [
                [255, 0, 255],
                [255, 0, 0],
                [0, 0, 0],
                [0, 0, 255],  # road, non-road, out, blue
                [128, 0, 1],
                [1, 7, 0],
                [0, 255, 0],
                [0, 9, 200],
            ]
        ],
        np.uint8,
    )
    assert data.decode_target(colours).tolist() == [[1, 0, 255, 255, 1, 0, 255, 255]]


def test_blue_pixels_are_ignored_and_odd_colours_warn_once_per_file(tmp_path: Path) -> None:
    root = make_road(tmp_path, ["um_000000", "um_000001"])
    blue = root / "training" / "gt_image_2" / "um_road_000000.png"
    odd = root / "training" / "gt_image_2" / "um_road_000001.png"
    rgb = gt_rgb(np.ones((12, 20), np.uint8))
    rgb[2, 3:7] = (0, 0, 255)
    write_rgb(blue, rgb)
    labels = data.load_sample(data.list_samples(root)[0])[1]
    assert (labels[2, 3:7] == data.IGNORE_INDEX).all() and (labels[2, 7:] == 1).all()
    rgb[0, :5] = (0, 255, 0)
    rgb[3, 3] = (128, 0, 255)
    write_rgb(odd, rgb)
    warnings = data.check_samples(data.list_samples(root))
    assert len(warnings) == 1 and warnings[0].startswith(str(odd))
    assert (
        "6 pixels" in warnings[0]
        and "RGB(0, 255, 0) x 5" in warnings[0]
        and "RGB(128, 0, 255) x 1" in warnings[0]
    )
    # decoded by the rule, not an error
    assert data.load_sample(data.list_samples(root)[1])[1][3, 3] == 1


def test_check_samples_finds_a_bad_file_before_training(tmp_path: Path) -> None:
    root = make_road(tmp_path, ["um_000000", "um_000001", "uu_000002"])
    bad = root / "training" / "image_2" / "um_000001.png"
    bad.write_bytes(b"\x89PNG truncated")
    with pytest.raises(DataError, match=f"cannot read image {bad}"):
        data.check_samples(data.list_samples(root))


def test_a_set_without_an_evaluated_pixel_is_an_error_before_training(tmp_path: Path) -> None:
    """Ground truth all black (outside the evaluation area) in every file of a split: no loss or
    metric exists on it (validation raised KeyError 'URBAN' after the first epoch)."""
    root = make_road(tmp_path, ["um_000000", "um_000001", "uu_000002"])
    samples = data.list_samples(root)
    for s in samples[1:]:
        write_rgb(s.target, np.zeros((12, 20, 3), np.uint8))
    assert data.check_samples(samples, evaluated={"val": samples[:2]}) == []  # one pixel will do
    with pytest.raises(
        DataError, match=f"val: no pixel of its 2 ground-truth files .*{samples[1].target}"
    ):
        data.check_samples(samples, evaluated={"train": samples[:1], "val": samples[1:]})


def test_real_kitti_ground_truth_decodes_with_blue_ignored(kitti_road_root: Path) -> None:
    samples = data.list_samples(kitti_road_root)
    assert len(samples) == 231
    assert data.check_samples(samples) == []  # readable, sizes agree, only the four known colours
    with_blue = 0
    for s in samples:
        rgb = data.read_image(s.target)
        labels = data.decode_target(rgb)
        blue = (rgb[..., 0] == 0) & (rgb[..., 2] > 0)
        with_blue += bool(blue.any())
        assert (labels[blue] == data.IGNORE_INDEX).all()
        assert np.array_equal(labels == 1, (rgb[..., 0] > 0) & (rgb[..., 2] > 0))
        assert np.array_equal(labels == 0, (rgb[..., 0] > 0) & (rgb[..., 2] == 0))
    assert with_blue == 17


def test_image_without_ground_truth(tmp_path: Path) -> None:
    root = make_road(tmp_path, ["um_000000", "um_000001"])
    (root / "training" / "gt_image_2" / "um_road_000001.png").unlink()
    with pytest.raises(
        DataError, match=r"um_000001\.png has no ground truth.*um_road_000001\.png"
    ):
        data.list_samples(root)


def test_size_mismatch(tmp_path: Path) -> None:
    root = make_road(tmp_path, ["uu_000007"])
    write_rgb(
        root / "training" / "gt_image_2" / "uu_road_000007.png",
        gt_rgb(np.zeros((12, 21), np.uint8)),
    )
    with pytest.raises(
        DataError, match=r"uu_road_000007\.png is 21x12 but image .*uu_000007\.png is 20x12"
    ):
        data.load_sample(data.list_samples(root)[0])


@pytest.mark.parametrize("which", ["image_2/um_000000.png", "gt_image_2/um_road_000000.png"])
def test_unreadable_png(tmp_path: Path, which: str) -> None:
    root = make_road(tmp_path, ["um_000000"])
    (root / "training" / which).write_bytes(b"\x89PNG\r\n\x1a\n truncated garbage")
    with pytest.raises(DataError, match=f"cannot read image .*{which}"):
        data.KittiRoad(data.list_samples(root))[0]


def test_split_file_with_unknown_stems(tmp_path: Path) -> None:
    root = make_road(tmp_path, ["um_000000", "um_000001"])
    stems = tmp_path / "val.txt"
    stems.write_text("um_000001\n\n# comment\num_000099\nuu_000000  # trailing comment\n")
    with pytest.raises(DataError, match=r"val\.txt: 2 stems .*'um_000099', 'uu_000000'"):
        data.split(root, "val", stems)
    stems.write_text("um_000001\n")
    assert [s.stem for s in data.split(root, "val", stems)] == ["um_000001"]


def test_missing_root_and_stem_without_category(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="image folder not found"):
        data.list_samples(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no '_'"):
        data.category_of("000001")


# --- transforms ----------------------------------------------------------------------------------


def labelled_pair(h: int = 24, w: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Image whose red channel is 100 x label, in 4x4 blocks.

    That makes alignment checkable after transforms.
    """
    rng = np.random.default_rng(1)
    labels = np.kron(
        rng.choice(np.array([0, 1, 2], np.uint8), (h // 4, w // 4)), np.ones((4, 4), np.uint8)
    )
    image = np.stack(
        [labels * 100, np.full_like(labels, 7), np.full_like(labels, 200)], -1
    ).astype(np.uint8)
    return image, labels


def test_to_tensor_keeps_values_unnormalised() -> None:
    image, labels = labelled_pair()
    x, y = T.ToTensor()(image, labels)
    assert (
        x.dtype == torch.float32
        and x.shape == (3, 24, 32)
        and y.dtype == torch.int64
        and y.shape == (24, 32)
    )
    assert torch.equal(x, torch.from_numpy(image).permute(2, 0, 1).float() / 255)
    assert torch.equal(y, torch.from_numpy(labels).long())


def test_flip_and_crop_keep_image_and_target_aligned() -> None:
    image, labels = labelled_pair()
    torch.manual_seed(0)
    x, y = T.Compose([T.RandomHorizontalFlip(1.0), T.RandomCrop((16, 20)), T.ToTensor()])(
        image, labels
    )
    assert x.shape == (3, 16, 20) and y.shape == (16, 20)
    assert torch.equal((x[0] * 255).round().long(), y * 100)
    full = T.Compose([T.RandomHorizontalFlip(1.0), T.ToTensor()])(image, labels)[1]
    assert torch.equal(full, torch.from_numpy(labels[:, ::-1].copy()).long())


def test_crop_larger_than_image_pads_target_with_ignore_and_image_with_mean() -> None:
    """The image is padded with the ImageNet mean (124, 116, 104).

    The model's own padding stands for it.
    """
    image, labels = labelled_pair(8, 12)
    x, y = T.Compose([T.RandomCrop((10, 16)), T.ToTensor()])(image, labels)
    assert x.shape == (3, 10, 16) and y.shape == (10, 16)
    assert int((y == 255).sum()) == 10 * 16 - 8 * 12
    assert torch.equal(y[:8, :12], torch.from_numpy(labels).long())
    mean = torch.tensor([124, 116, 104]).view(3, 1, 1) / 255
    assert torch.equal(x[:, 8:], mean.expand(3, 2, 16)) and torch.equal(
        x[:, :, 12:], mean.expand(3, 10, 4)
    )


def test_scale_and_resize_use_nearest_for_targets() -> None:
    image, labels = labelled_pair()
    labels[0, 0] = 255
    torch.manual_seed(0)
    for t in (T.Resize((17, 45)), T.RandomScale(0.5, 1.5)):
        x, y = T.Compose([t, T.ToTensor()])(image, labels)
        assert x.shape[-2:] == y.shape
        assert set(y.unique().tolist()) <= {0, 1, 2, 255}  # no interpolated label values
        agree = ((x[0] * 255 / 100).round().long() == y)[y != 255].float().mean()
        assert agree > 0.85  # blocks line up away from their edges
    y = T.Compose([T.Resize((48, 64)), T.ToTensor()])(image, labels)[1]
    assert torch.equal(y, torch.from_numpy(np.kron(labels, np.ones((2, 2), np.uint8))).long())


def test_random_scale_range() -> None:
    image, labels = labelled_pair(40, 60)
    torch.manual_seed(0)
    heights = {T.RandomScale(0.5, 1.0)(image, labels)[0].shape[-2] for _ in range(30)}
    assert min(heights) >= 20 and max(heights) <= 40 and len(heights) > 5


def test_color_jitter_changes_image_only() -> None:
    image, labels = labelled_pair()
    torch.manual_seed(0)
    x, y = T.Compose([T.ColorJitter(0.5, 0.5, 0.5, 0.1), T.ToTensor()])(image, labels)
    assert not torch.equal(x, T.ToTensor()(image, labels)[0])
    assert torch.equal(y, torch.from_numpy(labels).long())


def test_train_transforms_output_size_and_pure_resize() -> None:
    image, labels = labelled_pair(36, 52)
    torch.manual_seed(0)
    x, y = T.train_transforms((16, 24), None, (0.5, 1.5), 0.5, (0.3, 0.3, 0.3, 0.02))(
        image, labels
    )
    assert x.shape == (3, 16, 24) and y.shape == (16, 24) and x.dtype == torch.float32
    resize = T.train_transforms((18, 26), (18, 26), (1.0, 1.0), 0.0)
    assert [type(t).__name__ for t in resize.transforms] == ["Resize", "RandomCrop", "ToTensor"]
    assert torch.equal(
        resize(image, labels)[1], T.Compose([T.Resize((18, 26)), T.ToTensor()])(image, labels)[1]
    )


# --- several datasets, the working scale, camera augmentations ----------------------------------


def test_a_datasets_own_split_files_are_used_and_samples_know_their_dataset(
    camvid_root: Path,
) -> None:
    """camvid_road has train.txt / val.txt at its root: they are the split without any flag."""
    train, val = data.split(camvid_root, "train"), data.split(camvid_root, "val")
    assert (len(train), len(val)) == (367, 101) and val[0].stem == "0016E5_07959"
    assert {s.dataset for s in [*train, *val]} == {"camvid_road"}


def test_samples_group_by_dataset_in_order(tmp_path: Path) -> None:
    a = make_road(tmp_path / "kitti", ["um_000000", "uu_000001"])
    b = make_road(tmp_path / "city", ["0001TP_00010"])
    groups = data.group_by_dataset([*data.list_samples(b), *data.list_samples(a)])
    assert list(groups) == ["city", "kitti"]
    assert [s.stem for s in groups["kitti"]] == ["um_000000", "uu_000001"]


@pytest.mark.parametrize(
    "shape,expected",
    # 188 rows; width 188 * w / h rounded to a multiple of 8 (hand-computed)
    [((375, 1242), (188, 624)), ((360, 480), (188, 248)), ((1080, 1920), (188, 336))],
)
def test_scale_to_height_keeps_the_aspect_ratio(shape: tuple, expected: tuple) -> None:
    image = np.zeros((*shape, 3), np.uint8)
    labels = np.ones(shape, np.uint8)
    x, y = T.ScaleToHeight(188)(image, labels)
    assert tuple(x.shape[-2:]) == tuple(y.shape[-2:]) == expected


def test_random_aspect_changes_the_width_only_within_range() -> None:
    image, labels = labelled_pair(40, 60)
    torch.manual_seed(0)
    shapes = [T.RandomScale(1.0, 1.0, (0.8, 1.25))(image, labels)[0].shape for _ in range(40)]
    assert {s[-2] for s in shapes} == {40}
    widths = {s[-1] for s in shapes}
    assert min(widths) >= 48 and max(widths) <= 75 and len(widths) > 8  # 60 x [0.8, 1.25]


def test_camera_jitter_changes_the_image_only_and_p0_is_identity() -> None:
    image, labels = labelled_pair()
    torch.manual_seed(0)
    x, y = T.CameraJitter(p=1.0)(image, labels)
    assert x.dtype == torch.uint8 and x.shape == (3, 24, 32)
    assert not torch.equal(x, torch.from_numpy(image).permute(2, 0, 1))
    assert torch.equal(y[0], torch.from_numpy(labels))
    same, _ = T.CameraJitter(p=0.0)(image, labels)
    assert torch.equal(same, torch.from_numpy(image).permute(2, 0, 1))


def test_train_transforms_at_the_working_scale() -> None:
    image, labels = labelled_pair(36, 48)
    steps = T.train_transforms((16, 24), (99, 99), working_height=18, camera_prob=0.2)
    names = [type(t).__name__ for t in steps.transforms]
    assert names == [
        "ScaleToHeight",
        "RandomCrop",
        "RandomHorizontalFlip",
        "CameraJitter",
        "ToTensor",
    ]
    x, y = steps(image, labels)
    assert x.shape == (3, 16, 24) and y.shape == (16, 24)


def test_jpeg_round_trip_is_lossy_at_low_quality_and_keeps_shape() -> None:
    y, x = np.mgrid[:32, :48]
    texture = 128 + 60 * np.sin(x / 3.0) * np.cos(y / 5.0)  # smooth, as camera frames are
    image = torch.from_numpy(np.stack([texture, texture[::-1], 255 - texture]).astype(np.uint8))
    low, high = T.jpeg_round_trip(image, 10), T.jpeg_round_trip(image, 100)
    assert low.shape == high.shape == image.shape and low.dtype == torch.uint8
    err = [(x.float() - image.float()).abs().mean().item() for x in (low, high)]
    assert err[0] > 2 * err[1]  # quality 10 loses far more than quality 100
    flat = torch.full((3, 16, 16), 77, dtype=torch.uint8)
    assert (T.jpeg_round_trip(flat, 50).int() - 77).abs().max() <= 1  # a flat image survives
