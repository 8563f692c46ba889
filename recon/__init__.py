"""flytomo's reconstruction library: fly-scan physics, operators and methods.

Usable alone: numpy in, numpy out (or torch tensors on any device). Imports no scheduler.
"""
__version__ = "0.1.0"
