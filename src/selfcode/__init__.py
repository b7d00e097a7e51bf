"""selfcode: improves a Python repository with an LLM and commits only proven improvements."""

__version__ = "0.1.0"
