"""The streaming runtime below the nodes: two voices in, face frames out, with latency accounting (no rclpy here).

One vocabulary for everything that streams:

* ``push``: hand a streaming object new input; it never computes a frame (``FaceEngine.push`` takes one audio
  message; timelines are buffers and are ``write``-n and ``read``).
* ``step``: compute exactly one frame from its input and the state, and advance the state (the model modules'
  ``step(x, state)``, ``StreamingGenerator.step(frame, self_audio, partner_audio)``).
* ``poll(now_ns)``: run every step that is due at ``now_ns`` and return what they made (``FaceEngine.poll``).
* ``reset``: start a new stream; ``warm_up``: run silence through everything once, then reset.

Modules: ``frames`` (the generator contract and whole-clip stepping), ``generator`` (StreamingGenerator and its
torch backend), ``onnx_backend`` (the ONNX export and its ONNX Runtime backend), ``amplitude`` (the baseline a
learned face must beat) and ``engine`` (FaceEngine: audio messages to face frames on the caller's clock).
"""
