"""stream_omni_ros: the Stream-Omni omni-modal assistant (vision, speech in, speech out) for ROS 2.

The source tree and the colcon-generated interfaces (``stream_omni_ros.msg``,
``stream_omni_ros.action``) live in different folders; ``extend_path`` merges them into one
package.
"""
import pkgutil

__path__ = pkgutil.extend_path(__path__, __name__)

__version__ = "0.1.0"
