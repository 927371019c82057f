"""The package's import graph: no circles, and no arrow from a lower layer to a higher one.

Imports are read from the source with ast (every `import` and `from` statement, including those
inside functions and under TYPE_CHECKING), so a module is checked whether or not it imports here.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = "stream_omni_ros"
SOURCE = Path(__file__).resolve().parents[2] / PACKAGE
APPLICATIONS = (f"{PACKAGE}.apps", f"{PACKAGE}.bench", f"{PACKAGE}.cli")
# rclpy and its relatives, generated interfaces (ours and any *_msgs/_srvs/_interfaces package).
ROS_MODULE = re.compile(r"^(rclpy|rcl_\w*|rosidl\w*|ament_\w*|launch\w*|\w+_msgs|\w+_srvs"
                        rf"|\w+_interfaces|{PACKAGE}\.(msg|srv|action))(\.|$)")


def module_name(path: Path) -> str:
    """Dotted name of a source file of the package."""
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}


def import_statements(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of each import in one file, anywhere in it, relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    statements = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            statements += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            origin = node.module or ""
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            statements.append((origin, [alias.name for alias in node.names]))
    return statements


def imported_names(name: str, path: Path) -> set[str]:
    """Every dotted name one module imports: the modules and `module.name` of each `from`."""
    return {full for origin, names in import_statements(name, path)
            for full in [origin] + [f"{origin}.{item}" for item in names]}


def import_graph() -> dict[str, set[str]]:
    """For each module of the package, the modules of the package it imports."""
    modules = all_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for origin, names in import_statements(name, path):
            submodules = {f"{origin}.{item}" for item in names} & modules.keys()
            targets |= submodules
            if origin in modules and (not names or len(submodules) < len(names)):
                targets.add(origin)
        graph[name] = targets - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle of imports per strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(circle_through(graph, set(group), node))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def circle_through(graph: dict[str, set[str]], group: set[str], start: str) -> list[str]:
    """A shortest import path from start back to start inside one strongly connected group."""
    came_from: dict[str, str] = {}
    queue = [start]
    for node in queue:  # breadth first: the queue grows while it is read
        for target in sorted(graph[node] & group):
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return path[::-1] + [start]
            if target not in came_from:
                came_from[target] = node
                queue.append(target)
    raise AssertionError(f"no circle through {start}")


def forbidden_imports(folders: tuple[str, ...], forbidden) -> list[str]:
    """'module imports name' for each import of the folders' modules that forbidden accepts."""
    found = []
    for name, path in all_modules().items():
        if name.split(".")[1:2] and name.split(".")[1] in folders:
            found += [f"{name} imports {target}"
                      for target in sorted(imported_names(name, path)) if forbidden(target)]
    return found


def is_application(name: str) -> bool:
    """True for the applications above the nodes (cli, bench, apps)."""
    return any(name == app or name.startswith(app + ".") for app in APPLICATIONS)


def test_import_graph_has_no_circles():
    graph = import_graph()
    assert len(graph) > 100, "the walk missed the package's modules"
    found = cycles(graph)
    assert not found, "import circles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_cycle_finder_sees_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]


def test_model_vocoder_engine_import_no_ros_nodes_or_applications():
    def forbidden(target: str) -> bool:
        return (bool(ROS_MODULE.match(target)) or is_application(target)
                or target.startswith(f"{PACKAGE}.nodes"))

    found = forbidden_imports(("model", "vocoder", "engine"), forbidden)
    assert not found, "imports above their layer:\n" + "\n".join(found)


def test_model_and_vocoder_import_no_engine():
    found = forbidden_imports(("model", "vocoder"),
                              lambda target: target.startswith(f"{PACKAGE}.engine"))
    assert not found, "model/vocoder import the engine:\n" + "\n".join(found)


def test_nodes_import_no_application():
    found = forbidden_imports(("nodes",), is_application)
    assert not found, "nodes import applications:\n" + "\n".join(found)


def test_layer_walk_reads_every_module_and_sees_ros_imports():
    walked = [name for name in all_modules() if name.split(".")[1:2] in (["model"], ["engine"])]
    assert len(walked) > 30
    assert forbidden_imports(("nodes",), lambda target: bool(ROS_MODULE.match(target)))
