"""Fake models for tests, yours included: no network, no cost, full control over the replies.

`ScriptedLLM` answers from a list, `FunctionLLM` from a function, and `FakeClock` stands in for
time.monotonic; see `selfcode.llm.fakes`, where they live, for how to use them.
"""

from selfcode.llm.fakes import FakeClock, FunctionLLM, ScriptedLLM

__all__ = ["FakeClock", "FunctionLLM", "ScriptedLLM"]
