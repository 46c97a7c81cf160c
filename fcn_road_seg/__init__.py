"""fcn_road_seg: road segmentation for ROS 2 with a VGG16 FCN-8s."""
