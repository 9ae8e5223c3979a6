"""What the ``dystream`` command runs: render, eval, demo, bag tools, ONNX export, benchmarks.

The only room that may use every other one; nothing below imports it.
"""
