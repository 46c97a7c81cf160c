"""The rooms of the package: who may import whom, and no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "fcn_road_seg"
ROOMS = ("ros", "tools", "training")
#: room -> the rooms it may import besides the core (the core may import none of them)
ALLOWED = {"core": set(), "ros": set(), "tools": set(), "training": {"tools.kitti"}}


def module_name(path: Path) -> str:
    """``fcn_road_seg.x.y`` for ``fcn_road_seg/x/y.py`` (packages without ``.__init__``)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The package's modules that ``path`` imports, anywhere in it (lazy imports included)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found |= {t for t in targets if is_module(t)}
    return found


def is_module(name: str) -> bool:
    """Whether ``name`` is one of the package's modules or subpackages."""
    if not name.startswith("fcn_road_seg."):
        return False
    path = PACKAGE.joinpath(*name.split(".")[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def room(module: str) -> str:
    """``ros``, ``tools``, ``training`` or ``core``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS else "core"


GRAPH = {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def imports_rclpy(path: Path) -> bool:
    """Whether ``path`` imports rclpy (or one of its modules) anywhere."""
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        if any(n == "rclpy" or n.startswith("rclpy.") for n in names):
            return True
    return False


def test_the_rooms_exist_and_rclpy_lives_only_in_ros() -> None:
    assert {room(m) for m in GRAPH} == {"core", *ROOMS}
    users = sorted(module_name(p) for p in PACKAGE.rglob("*.py") if imports_rclpy(p))
    assert users == ["fcn_road_seg.ros.lifecycle_node", "fcn_road_seg.ros.node"]


def test_no_room_imports_a_room_it_may_not() -> None:
    bad = []
    for module, targets in GRAPH.items():
        mine = room(module)
        for target in targets:
            theirs = room(target)
            if theirs in (mine, "core"):
                continue
            if not any(target.startswith(f"fcn_road_seg.{ok}") for ok in ALLOWED[mine]):
                bad.append(f"{module} -> {target}")
    assert bad == []


def test_there_are_no_import_cycles() -> None:
    """Depth-first search over module-level and lazy imports alike."""
    edges = {m: ts - {m} for m, ts in GRAPH.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []
