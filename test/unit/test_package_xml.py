"""package.xml resolves with rosdep on Humble, Jazzy and Kilted, and covers what the code imports.

`rosdep install --from-paths src -y --ignore-src` (the README's robot path) stops at the first
key it cannot resolve and installs nothing, so every dependency must be a rosdep key or a ROS
package of each distro (test/data/rosdep_keys.txt, facts from ros/rosdistro).
"""
from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPEND_TAGS = ("depend", "build_depend", "buildtool_depend", "exec_depend", "test_depend",
               "build_export_depend")
# What only the demo, the benchmark, the tests or the simulation need: not on every robot.
NOT_FOR_EVERY_ROBOT = {"espeak", "espeak-ng", "libespeak-ng1", "sox", "ros_gz_bridge",
                       "python3-matplotlib", "python3-pytest", "pulseaudio", "pulseaudio-utils"}
# Modules the runtime imports -> the package.xml key that installs them (transformers brings
# safetensors, tokenizers and huggingface-hub), or the pip file for those with no key.
ROBOT_REQUIREMENTS = "scripts/requirements-robot.txt"
IMPORT_SOURCES = {
    "numpy": "python3-numpy", "cv2": "python3-opencv", "PIL": "python3-pil",
    "pyaudio": "python3-pyaudio", "yaml": "python3-yaml", "soundfile": "python3-soundfile",
    "torch": "python3-pytorch-pip", "transformers": "python3-transformers-pip",
    "safetensors": "python3-transformers-pip", "tokenizers": "python3-transformers-pip",
    "huggingface_hub": "python3-transformers-pip", "onnxruntime": "python3-onnxruntime-pip",
    "silero_vad": "python3-silero-vad-pip", "rosbags": "python3-rosbags-pip",
    "soxr": ROBOT_REQUIREMENTS, "rosbags.image": ROBOT_REQUIREMENTS,
    "livekit": ROBOT_REQUIREMENTS,
}
# The runtime: what the nodes and the launch files run on a robot (no demo, bench, test assets).
RUNTIME_FOLDERS = ("engine", "model", "vocoder", "nodes")
NOT_RUNTIME = {"tiny_checkpoint.py", "tiny_speech_tokenizer.py", "tiny_tokenizer.py",
               "random_weights.py"}


def resolvable_names() -> set[str]:
    """Every name of test/data/rosdep_keys.txt (system keys and ROS packages)."""
    lines = (ROOT / "test" / "data" / "rosdep_keys.txt").read_text().splitlines()
    return {line.strip() for line in lines
            if line.strip() and not line.startswith(("#", "["))}


def dependencies(*tags: str) -> dict[str, str]:
    """package.xml dependency name -> its tag, for the given tags (all by default)."""
    root = ET.parse(ROOT / "package.xml").getroot()
    return {element.text.strip(): element.tag for tag in (tags or DEPEND_TAGS)
            for element in root.iter(tag)}


def robot_requirements() -> set[str]:
    """Distribution names of scripts/requirements-robot.txt."""
    lines = (ROOT / ROBOT_REQUIREMENTS).read_text().splitlines()
    return {line.split("==")[0].strip() for line in lines
            if line.strip() and not line.startswith("#")}


def runtime_imports(path: Path) -> set[str]:
    """Modules a file imports at module level (also in a top-level try) or via require_module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    statements = list(tree.body)
    for node in tree.body:
        if isinstance(node, ast.Try):
            statements += node.body + [s for h in node.handlers for s in h.body]
    found = set()
    for node in statements:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "require_module"
                and isinstance(node.args[0], ast.Constant)):
            found.add(node.args[0].value)
    return found


def test_the_key_list_holds_what_rosdistro_says():
    names = resolvable_names()
    assert {"python3-silero-vad-pip", "python3-pil", "sox", "rclpy", "cv_bridge"} <= names
    # checked absent in rosdistro: these made `rosdep install` fail on every distro
    assert not {"espeak-ng", "python3-soxr-pip", "python3-safetensors-pip"} & names


def test_every_dependency_resolves_on_humble_jazzy_and_kilted():
    unresolvable = sorted(set(dependencies()) - resolvable_names())
    assert not unresolvable, (
        f"package.xml names {unresolvable}: no rosdep key or ROS package of Humble, Jazzy and "
        f"Kilted has that name (test/data/rosdep_keys.txt); use a key that exists or add the "
        f"library to {ROBOT_REQUIREMENTS}")


def test_demo_test_and_simulation_tools_are_not_run_dependencies():
    run = dependencies("depend", "exec_depend")
    assert not NOT_FOR_EVERY_ROBOT & set(run), sorted(NOT_FOR_EVERY_ROBOT & set(run))
    assert not [name for name in run if name.endswith("-dev")], "a -dev package is a build need"


def import_problem(module: str, keys: set[str], pip: set[str]) -> str | None:
    """Why a runtime import would be missing on a robot after the README's steps (None: fine)."""
    top = module.split(".")[0]
    if top in keys or top in sys.stdlib_module_names or top in ("stream_omni_ros", "__future__"):
        return None  # a ROS package of package.xml, the standard library, or this package
    source = IMPORT_SOURCES.get(module) or IMPORT_SOURCES.get(top)
    if source is None:
        return "no rosdep key or pip requirement known for it"
    if source == ROBOT_REQUIREMENTS:
        known = module if module in IMPORT_SOURCES else top  # livekit.rtc: livekit
        distribution = known.replace(".", "-").replace("_", "-")
        return None if distribution in pip else f"not in {ROBOT_REQUIREMENTS}"
    return None if source in keys else f"package.xml lacks {source}"


def test_every_runtime_import_is_installed_by_rosdep_or_the_robot_pip_step():
    keys, pip = set(dependencies()), robot_requirements()
    problems = {}
    for folder in RUNTIME_FOLDERS:
        for path in sorted((ROOT / "stream_omni_ros" / folder).glob("*.py")):
            for module in runtime_imports(path) if path.name not in NOT_RUNTIME else ():
                problem = import_problem(module, keys, pip)
                if problem:
                    problems[f"{path.name}: {module}"] = problem
    assert not problems, problems


def test_robot_requirements_never_replace_the_distros_numpy_or_opencv():
    pinned = robot_requirements()
    assert not pinned & {"numpy", "opencv-python", "opencv-python-headless", "torch"}, pinned
