"""Training: windows of samples for the model (``dataset``) and the training loop (``train``, ``dystream train``)."""
