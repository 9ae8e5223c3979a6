"""The ROS 2 nodes: thin rclpy adapters around the plain-Python engine (the only package that imports rclpy)."""
