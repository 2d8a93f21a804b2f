"""The package layout is the architecture: no module imports from a floor above its own, and no import cycles."""

import ast
from pathlib import Path

import pspnet

ROOT = Path(pspnet.__file__).parent

# Bottom up. A module may import its own floor's modules and those below.
FLOORS: list[tuple[str, ...]] = [
    ("errors", "classes", "files", "progress", "environment"),
    ("configfile", "device", "download", "distributed", "model"),
    ("data", "convert", "export", "weights"),
    ("checkpoint", "engine", "run_folder"),
    ("train",),
    ("bench",),
    ("cli", "__init__", "__main__"),
]


def room(module: str) -> str:
    """The top-level name under pspnet: 'engine' for pspnet.engine.recipe, 'checkpoint' for pspnet.checkpoint."""
    return module.split(".")[1] if "." in module else "__init__"


def floor(module: str) -> int:
    name = room(module)
    for level, names in enumerate(FLOORS):
        if name in names:
            return level
    raise AssertionError(f"{module}: its room {name!r} is on no floor; add it to FLOORS")


def imports() -> dict[str, set[str]]:
    """Every pspnet module and the pspnet modules it imports (also those imported inside functions)."""
    found: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "pspnet":  # from pspnet import weights
                targets.update(f"pspnet.{a.name}" if (ROOT / f"{a.name}.py").exists() or (ROOT / a.name).is_dir()
                               else "pspnet" for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pspnet"):
                targets.add(node.module)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("pspnet"))
        found[module] = {t for t in targets if t != module}
    return found


def test_no_module_imports_from_a_floor_above() -> None:
    upward = sorted(f"{m} (floor {floor(m)}) imports {t} (floor {floor(t)})"
                    for m, targets in imports().items() if m != "pspnet" for t in targets
                    if t != "pspnet" and floor(t) > floor(m))
    assert not upward, "\n".join(upward)


def cyclic(edges: dict[str, set[str]]) -> list[str]:
    """The nodes that can reach themselves."""
    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in edges.get(start, ()))

    return sorted(node for node in edges if reaches(node, node, {node}))


def test_no_import_cycles_between_modules() -> None:
    edges = {m: {t for t in targets if t != "pspnet"} for m, targets in imports().items() if m != "pspnet"}
    assert not cyclic(edges), f"modules on an import cycle: {cyclic(edges)}"


def test_no_import_cycles_between_rooms() -> None:
    edges: dict[str, set[str]] = {}
    for m, targets in imports().items():
        for t in targets:
            if m != "pspnet" and t != "pspnet" and room(m) != room(t):
                edges.setdefault(room(m), set()).add(room(t))
    assert not cyclic(edges), f"rooms on an import cycle: {cyclic(edges)}"
