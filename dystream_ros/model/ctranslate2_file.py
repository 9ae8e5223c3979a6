"""A reader of CTranslate2 model files (``model.bin``), so that no CTranslate2 is needed to use their weights.

The file (binary version 6, as CTranslate2 4.x writes it) is little-endian:

* ``uint32`` binary version, a string (the spec name, e.g. ``WhisperSpec``), ``uint32`` spec revision;
* ``uint32`` variable count, then per variable: its name (a string), ``uint8`` rank, ``rank`` x ``uint32`` dims,
  ``uint8`` dtype, ``uint32`` byte count, the bytes (row-major);
* the aliases (which we do not need).

A string is a ``uint16`` byte count followed by that many bytes, the last of which is a NUL.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from dystream_ros.errors import CheckpointError

BINARY_VERSION = 6
DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}  # CTranslate2's DataType ids


class _Cursor:
    """Reads values one after the other from a bytes buffer."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.offset, self.path = data, 0, path

    def take(self, size: int) -> bytes:
        if self.offset + size > len(self.data):
            msg = f'{self.path}: truncated CTranslate2 file (wanted {size} bytes at offset {self.offset})'
            raise CheckpointError(msg)
        chunk = self.data[self.offset:self.offset + size]
        self.offset += size
        return chunk

    def number(self, fmt: str) -> int:
        return struct.unpack('<' + fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return self.take(self.number('H')).rstrip(b'\0').decode()


def read_ctranslate2(path: str | Path, prefix: str = '') -> tuple[str, dict[str, np.ndarray]]:
    """The spec name and the variables whose name starts with ``prefix``, as numpy arrays of the stored dtype."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        msg = f'cannot read {path}: {exc}'
        raise CheckpointError(msg) from None
    cursor = _Cursor(data, path)
    version = cursor.number('I')
    if version != BINARY_VERSION:
        msg = f'{path}: CTranslate2 binary version {version}; this reader knows version {BINARY_VERSION}'
        raise CheckpointError(msg)
    spec = cursor.string()
    cursor.number('I')  # spec revision
    variables = {}
    for _ in range(cursor.number('I')):
        name = cursor.string()
        shape = tuple(cursor.number('I') for _ in range(cursor.number('B')))
        dtype_id, size = cursor.number('B'), cursor.number('I')
        raw = cursor.take(size)
        if not name.startswith(prefix):
            continue
        if dtype_id not in DTYPES:
            msg = f'{path}: variable {name} has CTranslate2 dtype {dtype_id}, which this reader does not know'
            raise CheckpointError(msg)
        variables[name] = np.frombuffer(raw, DTYPES[dtype_id]).reshape(shape)
    return spec, variables
