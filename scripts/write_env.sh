#!/usr/bin/env bash
# Writes $VENV/env.sh (venv + ROS environment + the built overlay) and the Fast DDS profile.
#   usage: write_env.sh VENV ROOT [SYSTEM_ROS_DISTRO]
set -euo pipefail
VENV="$1"; ROOT="$2"; SYSTEM_ROS="${3:-}"

# Fast DDS defaults sometimes match a participant that starts later only at the next 3 s lease
# announcement; faster initial announcements make cross-process discovery take well under 1 s.
# The lease stays at Fast DDS's own 20 s: a process stalled longer than its lease (a loaded
# robot computer, a model loading into swap) is dropped by its peers, and they do not match its
# endpoints again when it comes back, so a short lease cut topics for good.
cat > "$VENV/fastdds_fast_discovery.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <participant profile_name="fast_discovery" is_default_profile="true">
      <rtps>
        <builtin>
          <discovery_config>
            <initialAnnouncements>
              <count>20</count>
              <period><sec>0</sec><nanosec>50000000</nanosec></period>
            </initialAnnouncements>
            <leaseAnnouncement><sec>0</sec><nanosec>500000000</nanosec></leaseAnnouncement>
            <leaseDuration><sec>20</sec><nanosec>0</nanosec></leaseDuration>
          </discovery_config>
        </builtin>
      </rtps>
    </participant>
  </profiles>
</dds>
XML

{
  echo "# source me: venv + ROS 2 environment + the stream_omni_ros build. Written by setup.sh."
  echo "# '--no-overlay' skips the package's own install/ (used while building it)."
  if [ -n "$SYSTEM_ROS" ]; then
    echo ". /opt/ros/$SYSTEM_ROS/setup.bash"
  fi
  echo ". \"$VENV/bin/activate\""
  if [ -z "$SYSTEM_ROS" ]; then
    echo "export AMENT_PREFIX_PATH=\"$VENV\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}\""
    echo "export CMAKE_PREFIX_PATH=\"$VENV\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}\""
  fi
  cat <<EOF
export ROS_AUTOMATIC_DISCOVERY_RANGE="\${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export FASTDDS_DEFAULT_PROFILES_FILE="\${FASTDDS_DEFAULT_PROFILES_FILE:-$VENV/fastdds_fast_discovery.xml}"
if [ "\${1:-}" != "--no-overlay" ] && [ -f "$ROOT/install/setup.bash" ]; then
  . "$ROOT/install/setup.bash"
fi
EOF
} > "$VENV/env.sh"
