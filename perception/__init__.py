"""Models, datasets, training and evaluation: pure PyTorch, never imports zmq.

Submodules import torch lazily where they need it, so that light tools (drive I/O) stay light.
"""
