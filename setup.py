"""fcn_road_seg: an ament_python ROS 2 package that pip can also install (with extras)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "fcn_road_seg"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["data/*.pt", "data/*.onnx", "data/*.onnx.json"]},
    data_files=[
        (f"share/{PACKAGE}", ["LICENSE"]),
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "numpy",
        "opencv-python-headless",
        "pillow",
        "torch",
        "torchvision",
        "rosbags>=0.10",
        "tqdm",
        "onnxruntime",
    ],
    extras_require={
        "onnx": ["onnx", "onnxruntime", "onnxscript"],
        "train": ["h5py", "matplotlib", "tensorboard", "onnx", "onnxruntime", "onnxscript"],
        "test": [
            "pytest<9",
            "ruff",
            "pyyaml",
            "h5py",
            "onnx",
            "onnxruntime",
            "onnxscript",
            "matplotlib",
            "tensorboard",
            "openvino",
        ],
        "tensorrt": ["tensorrt", "onnx"],
        "openvino": ["openvino"],
    },
    tests_require=["pytest"],
    zip_safe=False,
    maintainer="fcn_road_seg developers",
    description=(
        "Camera road segmentation (VGG16 FCN-8s) for ROS 2, with KITTI Road training and "
        "TensorRT deployment."
    ),
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            f"road_seg_node = {PACKAGE}.ros.node:main",
            f"road_seg_lifecycle_node = {PACKAGE}.ros.lifecycle_node:main",
            f"kitti2bag = {PACKAGE}.tools.kitti2bag:main",
            f"segment_bag = {PACKAGE}.tools.segment_bag:main",
            f"fcn-road-build-engine = {PACKAGE}.backends.tensorrt_build:main",
            "fcn-road-train = fcn_road_seg.training.train:main",
            "fcn-road-eval = fcn_road_seg.training.evaluate:main",
            "fcn-road-export = fcn_road_seg.training.export:main",
            "fcn-road-calibrate = fcn_road_seg.training.calibration:main",
            "fcn-road-convert-cityscapes = fcn_road_seg.training.convert_cityscapes:main",
            "fcn-road-interpolate = fcn_road_seg.training.interpolate:main",
            f"fcn-road-segment = {PACKAGE}.tools.media:main",
            "fcn-road-weights = fcn_road_seg.training.weights:main",
        ],
    },
)
