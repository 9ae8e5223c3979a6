"""What a test's `dystream export-onnx` run made (the ``published_onnx_export`` fixture of conftest.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OnnxExport:
    """The cache folder `dystream export-onnx` filled, its JSON report and its progress lines."""

    cache: Path
    report: dict
    progress: str
