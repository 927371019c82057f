"""ROS 2 adapters: the only part of stream_omni_ros that imports rclpy or message types."""
