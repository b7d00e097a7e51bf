"""`make_llm`: the model a configuration asks for."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from selfcode.config import LLMConfig
from selfcode.llm.openai_client import OpenAILLM
from selfcode.llm.protocol import LLM
from selfcode.llm.recording import RecordingLLM
from selfcode.llm.replay import ReplayLLM

__all__ = ["make_llm"]


def make_llm(
    config: LLMConfig,
    environ: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[str], None] | None = None,
) -> LLM:
    """The model `config` asks for: a replay when `config.replay` is set, else the real client;
    wrapped in a `RecordingLLM` when `config.record` names a file."""
    llm: LLM
    if config.replay is not None:
        llm = ReplayLLM(config.replay)
    else:
        llm = OpenAILLM(config, environ=environ, sleep=sleep, on_retry=on_retry)
    if config.record is not None:
        llm = RecordingLLM(llm, config.record)
    return llm
