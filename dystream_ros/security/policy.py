"""Who may publish and subscribe what: the grants of our own processes, and the user's from a policy file.

Our processes' grants are the topics their nodes use (a test checks them against the endpoints a running node
really has). Topic names are ROS names as the node sees them before remapping; ``~/x`` is the node's private
topic ``/<node>/x``. Every grant also covers what any rclpy node needs: ``/rosout``, ``/parameter_events``, the
discovery topic, and its own services (``rq/<node>/*`` in, ``rr/<node>/*`` out), not other nodes' services.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dystream_ros.errors import ConfigError


@dataclass(frozen=True)
class Grant:
    """What one enclave's process may do on the graph."""

    node: str  # the node's name (its own services and private topics)
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    calls: tuple[str, ...] = field(default=())  # other nodes whose services it calls (e.g. a lifecycle manager)


# The face node: both voices (and their AudioInfo) and a gaze target in; the face, its motion, the head pose, the
# neck and the diagnostics out; lifecycle transitions on its private topic.
FACE_INPUTS = ('self_audio', 'self_audio_info', 'partner_audio', 'partner_audio_info', 'gaze_target')
FACE_OUTPUTS = ('face/image', 'face/motion', 'head/pose', 'neck/command', '/diagnostics', '~/transition_event')

OUR_ENCLAVES: dict[str, Grant] = {
    '/dystream/face': Grant('dystream_node', publish=FACE_OUTPUTS, subscribe=FACE_INPUTS),
    '/dystream/capture': Grant('audio_capture_node', publish=('audio', 'audio_info')),
    '/dystream/player': Grant('audio_player_node', subscribe=('self_audio', 'self_audio_info')),
    # `dystream bag replay`: a recorded conversation into a secure robot, paced by the face's frames
    '/dystream/replay': Grant('dystream_bag_replay', publish=FACE_INPUTS[:4], subscribe=('face/motion',)),
}


def dds_topic(name: str, node: str) -> str:
    """The DDS topic of ROS topic ``name`` (root namespace): ``face/image`` -> ``rt/face/image``."""
    if name.startswith('~/'):
        name = f'{node}/{name[2:]}'
    return 'rt/' + name.lstrip('/')


def remapped(grant: Grant, remaps: dict[str, str]) -> Grant:
    """The grant as a launch file runs the node: ``__node`` renames the node (``__node:=microphone``), the other
    rules rename topics (``self_audio:=/tts/audio``)."""
    def rename(names: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(remaps.get(name, remaps.get('/' + name, name)) for name in names)

    return Grant(remaps.get('__node', grant.node), rename(grant.publish), rename(grant.subscribe), grant.calls)


def load_policy(path: Path) -> dict[str, Grant]:
    """The user's enclaves from a YAML policy file, e.g. ``/robot/tts: {node: tts, publish: [self_audio]}``.

    See config/security_policy.yaml.
    """
    import yaml

    try:
        document = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        msg = f'cannot read the security policy {path}: {exc}'
        raise ConfigError(msg) from exc
    if not isinstance(document, dict):
        msg = f'{path}: expected a mapping of enclave -> grant'
        raise ConfigError(msg)
    grants = {}
    for enclave, entry in document.items():
        check_enclave(enclave)
        if not isinstance(entry, dict) or not isinstance(entry.get('node'), str):
            msg = f'{path}: enclave {enclave} needs at least "node: <name>"'
            raise ConfigError(msg)
        unknown = set(entry) - {'node', 'publish', 'subscribe', 'calls'}
        if unknown:
            msg = f'{path}: enclave {enclave}: unknown keys {sorted(unknown)}'
            raise ConfigError(msg)
        grants[enclave] = Grant(entry['node'], *(tuple(str(t) for t in entry.get(key) or ())
                                                 for key in ('publish', 'subscribe', 'calls')))
    return grants


def check_enclave(enclave: str) -> None:
    """Raise ConfigError unless ``enclave`` is an absolute ROS-style path (``/dystream/face``)."""
    parts = enclave.split('/')
    if not enclave.startswith('/') or len(enclave) < 2 or not all(p.replace('_', 'a').isalnum() for p in parts[1:]):
        msg = f'enclave names are absolute paths of letters, digits and _ ("/dystream/face"), got {enclave!r}'
        raise ConfigError(msg)
