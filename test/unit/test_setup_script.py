"""scripts/setup.sh: clear messages for bad environments, and a no-op second run."""
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_setup(tmp_path: Path, **env_overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VENV": str(tmp_path / "venv"), **env_overrides}
    return subprocess.run(["bash", str(ROOT / "scripts/setup.sh")], env=env, text=True,
                          capture_output=True, timeout=120, stdin=subprocess.DEVNULL)


def test_missing_python_is_named(tmp_path):
    result = run_setup(tmp_path, PYTHON=str(tmp_path / "no-such-python"))
    assert result.returncode != 0
    assert "no-such-python" in result.stderr and "3.11" in result.stderr
    assert not (tmp_path / "venv").exists()


def test_wrong_python_version_is_refused(tmp_path):
    fake = tmp_path / "python3.9"
    fake.write_text("#!/bin/sh\necho 3.9\n")
    fake.chmod(0o755)
    result = run_setup(tmp_path, PYTHON=str(fake))
    assert result.returncode != 0
    assert "Python 3.9" in result.stderr and "3.11" in result.stderr


def test_missing_debian_package_that_cannot_be_installed_is_named(tmp_path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "dpkg").write_text(
        "#!/bin/sh\n[ \"$2\" = sox ] && exit 1\nexec /usr/bin/dpkg \"$@\"\n")
    (fake_bin / "dpkg").chmod(0o755)
    result = run_setup(tmp_path, PATH=f"{fake_bin}:{os.environ['PATH']}", SKIP_APT="1")
    assert result.returncode != 0
    assert "sox" in result.stderr and "missing Debian packages" in result.stderr


def test_second_run_installs_and_builds_nothing():
    env = {k: v for k, v in os.environ.items() if k != "VENV"}
    runs = [subprocess.run(["bash", str(ROOT / "scripts/setup.sh")], env=env, text=True,
                           capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
            for _ in range(2)]  # the first brings a changed tree up to date
    assert all(run.returncode == 0 for run in runs), runs[-1].stderr
    second = runs[1].stdout
    assert "Python packages up to date" in second and "colcon build up to date" in second
    assert "pip install" not in second and "apt-get" not in second


def test_humble_is_refused_with_the_supported_distros(tmp_path):
    result = run_setup(tmp_path, ROS_DISTRO="humble")
    assert result.returncode != 0
    assert "humble" in result.stderr and "Jazzy" in result.stderr and "Kilted" in result.stderr
    assert not (tmp_path / "venv").exists()


def pip_files(tmp_path: Path, *distro_python: str) -> tuple[str, list[str]]:
    """Run scripts/pip_files.sh; (constraints, requirement names)."""
    subprocess.run(["bash", str(ROOT / "scripts/pip_files.sh"), str(tmp_path), "torch==9.9.9",
                    *distro_python], check=True, timeout=30)
    names = [line.split("==")[0].lower() for line in
             (tmp_path / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    return (tmp_path / "constraints.txt").read_text(), names


def test_on_a_robot_pip_keeps_the_distros_numpy_and_opencv(tmp_path):
    distro_python = tmp_path / "python3"  # the distro's python with numpy 1.26.4
    distro_python.write_text("#!/bin/sh\necho 1.26.4\n")
    distro_python.chmod(0o755)
    constraints, names = pip_files(tmp_path, str(distro_python))
    assert "numpy==1.26.4" in constraints.splitlines() and "torch==9.9.9" in constraints
    assert not {"numpy", "opencv-python-headless", "pyaudio", "pyyaml"} & set(names)
    assert {"transformers", "soxr", "silero-vad", "rosbags-image"} <= set(names)
    assert not [name for name in names if name.startswith("ros-kilted-")]


def test_without_a_distro_pip_installs_the_tested_numpy_and_the_ros_wheels(tmp_path):
    constraints, names = pip_files(tmp_path)
    assert "numpy==2.4.6" in constraints.splitlines()
    assert {"numpy", "ros-kilted-rclpy", "soxr"} <= set(names)
