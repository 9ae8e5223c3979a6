"""The house rules that keep the package readable: arrows between rooms point down, no import circle, ruff passes."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / 'dystream_ros'
# room -> the rooms it may import (itself always). apps, and the `dystream` command that dispatches to it, may use
# anything; nothing else imports apps.
BASE = {'units', 'errors', 'resources'}
MAY_IMPORT = {
    'units': set(), 'errors': set(), 'resources': set(),
    'model': BASE,
    'audio': BASE,
    'face': BASE,
    'neck': BASE | {'face'},
    'data': BASE | {'audio', 'face'},
    'runtime': BASE | {'model', 'audio', 'face', 'neck'},
    'training': BASE | {'model', 'audio', 'data'},
    'security': BASE,
    'nodes': BASE | {'msg', 'runtime', 'model', 'audio', 'face', 'neck', 'security'},
}


def _modules() -> dict[str, Path]:
    return {'.'.join(path.relative_to(ROOT).with_suffix('').parts).removesuffix('.__init__'): path
            for path in PACKAGE.rglob('*.py')}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every dystream_ros module ``path`` imports, at module level or inside a function (``from package import
    module`` counts as importing the module, not the package's ``__init__``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f'{node.module}.{alias.name}' if f'{node.module}.{alias.name}' in modules else node.module
                         for alias in node.names)
    return {name for name in found if name in modules}


def _room(module: str) -> str:
    return module.split('.')[1] if module.count('.') else ''


@pytest.mark.linter
def test_arrows_between_rooms_point_down() -> None:
    modules = _modules()
    wrong = []
    for module, path in modules.items():
        room = _room(module)
        if room in ('apps', 'cli', ''):
            continue
        allowed = MAY_IMPORT.get(room, BASE) | {room}
        wrong += [f'{module} imports {name}' for name in sorted(_imports(path, modules)) if _room(name) not in allowed]
    assert not wrong, '\n'.join(wrong)


@pytest.mark.linter
def test_no_module_imports_another_that_imports_it_back() -> None:
    modules = _modules()
    graph = {module: _imports(path, modules) - {module} for module, path in modules.items()}

    def path_between(start: str, goal: str) -> list[str] | None:
        stack, seen = [[start]], {start}
        while stack:
            trail = stack.pop()
            for name in graph[trail[-1]]:
                if name == goal:
                    return [*trail, name]
                if name not in seen:
                    seen.add(name)
                    stack.append([*trail, name])
        return None

    circles = {' -> '.join(trail) for module in graph if (trail := path_between(module, module))}
    assert not circles, '\n'.join(sorted(circles))


@pytest.mark.linter
def test_ruff_passes() -> None:
    ruff = shutil.which('ruff', path=str(Path(sys.executable).parent))
    assert ruff, 'ruff is not installed (requirements/python.txt)'
    result = subprocess.run([ruff, 'check', '--no-cache', str(ROOT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
