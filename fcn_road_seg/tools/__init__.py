"""Offline tools: KITTI conversion, rosbag2 helpers, bags, videos and images, the demo."""
