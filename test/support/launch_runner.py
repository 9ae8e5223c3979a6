"""Load our launch files and start what they describe, where `ros2 launch` does not exist (ROS from PyPI wheels).

While a launch file is loaded, stand-ins for the subset of the standard ``launch`` / ``launch_ros`` API that our
launch files use take the place of those modules (real ones included, so the test reads the same objects
everywhere): they record their arguments, and :func:`processes` turns the description into the command lines
``ros2 launch`` would run (``lib/<package>/<executable> --ros-args ...``). The launch files themselves import
only the standard API, so ``ros2 launch`` runs them on a ROS install.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class _Recorded:
    """A launch entity that keeps its constructor arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs


def _stand_ins() -> dict[str, types.ModuleType]:
    names = {
        'launch': ['LaunchDescription'],
        'launch.actions': ['DeclareLaunchArgument', 'ExecuteProcess', 'RegisterEventHandler', 'EmitEvent',
                           'SetEnvironmentVariable'],
        'launch.conditions': ['IfCondition'],
        'launch.substitutions': ['LaunchConfiguration', 'PathJoinSubstitution'],
        'launch.event_handlers': ['OnProcessExit'],
        'launch.events': ['Shutdown'],
        'launch_ros': [],
        'launch_ros.actions': ['Node'],
        'launch_ros.substitutions': ['FindPackageShare'],
    }
    modules = {}
    for module_name, classes in names.items():
        module = types.ModuleType(module_name)
        for class_name in classes:
            setattr(module, class_name, type(class_name, (_Recorded,), {}))
        modules[module_name] = module
    return modules


def load(path: Path) -> Any:
    """The LaunchDescription of a launch file, built with the stand-ins."""
    stand_ins = _stand_ins()
    saved = {name: sys.modules.get(name) for name in stand_ins}
    sys.modules.update(stand_ins)
    try:
        spec = importlib.util.spec_from_file_location(f'launch_file_{Path(path).stem.replace(".", "_")}', path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.generate_launch_description()
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _entities(description: Any) -> list[Any]:
    return list(description.args[0]) if description.args else list(description.kwargs.get('initial_entities', []))


def _kind(entity: Any) -> str:
    return type(entity).__name__


def resolve(value: Any, arguments: dict[str, str], prefix: Path) -> Any:
    """The value of a substitution, as ``ros2 launch`` would compute it."""
    if isinstance(value, (list, tuple)):
        return [resolve(v, arguments, prefix) for v in value]
    kind = _kind(value)
    if kind == 'LaunchConfiguration':
        return arguments[value.args[0]]
    if kind == 'PathJoinSubstitution':
        return os.path.join(*(str(resolve(part, arguments, prefix)) for part in value.args[0]))
    if kind == 'FindPackageShare':
        return str(prefix / 'share' / value.args[0])
    if isinstance(value, dict):
        return {k: resolve(v, arguments, prefix) for k, v in value.items()}
    return value


@dataclass
class Process:
    """A process the launch file starts."""

    name: str
    argv: list[str]
    node: Any = None  # the Node entity, for nodes
    env: dict[str, str] = field(default_factory=dict)  # what SetEnvironmentVariable actions set before it


def processes(description: Any, overrides: dict[str, str] | None = None, prefix: Path | None = None
              ) -> tuple[list[Process], dict[str, str]]:
    """The command lines of every Node and ExecuteProcess, and the launch arguments' values."""
    prefix = Path(prefix or os.environ.get('SCRATCH_PREFIX', sys.prefix))
    entities = _entities(description)
    arguments = {}
    for entity in entities:
        if _kind(entity) == 'DeclareLaunchArgument':
            name = entity.args[0] if entity.args else entity.kwargs['name']
            arguments[name] = entity.kwargs.get('default_value')
    arguments.update(overrides or {})
    arguments = {name: str(resolve(value, arguments, prefix)) for name, value in arguments.items()}
    result, env = [], {}
    for entity in entities:
        kw = entity.kwargs
        condition = kw.get('condition')
        if condition is not None and str(resolve(condition.args[0], arguments, prefix)).lower() not in ('true', '1'):
            continue
        if _kind(entity) == 'SetEnvironmentVariable':
            env[entity.args[0]] = str(resolve(entity.args[1], arguments, prefix))
        elif _kind(entity) == 'Node':
            argv = [str(prefix / 'lib' / kw['package'] / kw['executable']), '--ros-args',
                    *(str(resolve(a, arguments, prefix)) for a in kw.get('ros_arguments', [])),
                    '-r', f'__node:={kw["name"]}']
            for parameters in kw.get('parameters', []):
                resolved = resolve(parameters, arguments, prefix)
                if isinstance(resolved, dict):
                    for key, value in resolved.items():
                        argv += ['-p', f'{key}:={value}' if value != '' else f'{key}:=""']
                else:
                    argv += ['--params-file', str(resolved)]
            for source, target in kw.get('remappings', []):
                argv += ['-r', f'{resolve(source, arguments, prefix)}:={resolve(target, arguments, prefix)}']
            result.append(Process(kw['name'], argv, entity, dict(env)))
        elif _kind(entity) == 'ExecuteProcess':
            argv = [str(resolve(part, arguments, prefix)) for part in kw['cmd']]
            if argv[0] == 'dystream':
                argv[0] = str(prefix / 'bin' / 'dystream')
            result.append(Process(' '.join(argv[:3]), argv, env=dict(env)))
    return result, arguments
