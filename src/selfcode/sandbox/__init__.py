"""Sandboxes: where model-written code runs. See `base.Sandbox` for the protocol."""

from selfcode.sandbox.base import ExecResult, Sandbox

__all__ = ["ExecResult", "Sandbox"]
