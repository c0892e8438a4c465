"""The rooms of ``mtvision/`` import one way: no module imports itself back through
others, no room (``mtvision.<room>``) imports a room that imports it, and the backbone
room stands alone (``from mtvision.backbones import MobileNetV2`` pulls in no toolkit).

Module-level imports only, read with ``ast``: imports inside functions are deliberate
late binding (e.g. ``create_model(weights=...)`` converting a file with the converter
that itself builds models by name) and do not run at import time.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mtvision"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imported(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The mtvision modules ``path`` imports when it is imported (top-level statements,
    ``try`` bodies included; ``if TYPE_CHECKING`` blocks and function bodies not)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for statement in ast.parse(path.read_text(encoding="utf-8")).body:
        nodes = statement.body if isinstance(statement, ast.Try) else [statement]
        for node in nodes:
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    kept = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(kept + ([node.module] if node.module else []))
                targets = [f"{base}.{alias.name}" for alias in node.names]
                if not all(target in modules for target in targets):  # names, not submodules
                    targets.append(base)
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                # A module's parent packages are imported before it, whatever it says.
                if target and not (name == target or name.startswith(target + ".")):
                    found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imported(path, name, modules) for name, path in modules.items()}


def _room(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path (first == last), or None."""
    state: dict[str, int] = {}
    trail: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        trail.append(node)
        for other in sorted(graph.get(node, ())):
            if state.get(other) == 1:
                return trail[trail.index(other) :] + [other]
            if other not in state and (found := visit(other)):
                return found
        state[node] = 2
        trail.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_module_imports_itself_back():
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_no_room_imports_a_room_that_imports_it():
    rooms: dict[str, set[str]] = {}
    for module, imported in _graph().items():
        rooms.setdefault(_room(module), set()).update(
            _room(other) for other in imported if _room(other) != _room(module)
        )
    cycle = _cycle(rooms)
    assert cycle is None, " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("room", "allowed"),
    [
        ("mtvision.backbones", {"mtvision.layers", "mtvision.registry", "mtvision.utils"}),
        ("mtvision.layers", {"mtvision.errors"}),
        ("mtvision.utils", {"mtvision.errors"}),
        ("mtvision.visualization", {"mtvision.errors", "mtvision.utils"}),
        ("mtvision.data", {"mtvision.errors", "mtvision.registry", "mtvision.utils"}),
    ],
)
def test_lower_rooms_import_only_below_them(room, allowed):
    imported = set()
    for module, others in _graph().items():
        if _room(module) == room:
            imported |= {_room(other) for other in others if _room(other) != room}
    assert imported <= allowed, f"{room} imports {sorted(imported - allowed)}"


def test_the_backbone_imports_without_the_toolkit():
    """What a user of another detector gets with ``from mtvision.backbones import ...``."""
    code = (
        "import sys; from mtvision.backbones import MobileNetV2, load_torchvision_weights; "
        "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('mtvision.')}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded = set(ast.literal_eval(result.stdout.strip()))
    assert loaded <= {"backbones", "layers", "registry", "utils", "errors"}, loaded
