"""The ROS 2 adapter: the only modules that import rclpy."""
