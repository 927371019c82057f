"""Conversation engine without ROS: audio front end, VAD, turn-taking, images, history, events.

Import the submodules directly (e.g. ``stream_omni_ros.engine.engine``).
"""
