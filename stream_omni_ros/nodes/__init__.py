"""ROS 2 adapters: the nodes, their parts and message conversions.

Below them only engine/, model/ and vocoder/, which never import rclpy or message types; above
them the applications (apps/, bench/, cli.py), which nodes/ never import.
"""
