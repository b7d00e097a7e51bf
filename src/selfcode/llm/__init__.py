"""Talking to a model: the `LLM` protocol, the openai-SDK client, the price table and replays.

Every failure leaves this package as a `selfcode.errors` exception whose message is one sentence
saying what went wrong and what to do; no exception from the `openai` SDK escapes. The work is
split into small modules, each with one job; import the public names from here.

* `LLM`, `Message`, `Reply`, `Usage` (protocol.py) are the contract every model honours.
* `OpenAILLM` (openai_client.py) talks to any OpenAI-compatible endpoint and maps every SDK
  failure to one sentence.
* retry.py decides what a failed request means: wait and retry it (backoff, `Retry-After`),
  give up (`LLMError`, `EndpointUnreachable`), or shrink the prompt (`ContextLengthError`).
* `PRICES`, `cost_of` (prices.py) say what a reply cost; an unknown model stays unpriced.
* `ReplayLLM` (replay.py) plays a JSONL file back; `RecordingLLM` (recording.py) writes one.
* `make_llm` (factory.py) builds the model a configuration asks for.
* `ModelPool` (pool.py) holds the models of `--model a,b,c`, one client each, and chooses the
  model of each candidate's conversation with the bandit of `search/bandit.py`; import it from
  `selfcode.llm.pool`.
* `ScriptedLLM`, `FunctionLLM`, `FakeClock` (fakes.py) are fakes for tests; import them from
  `selfcode.testing`, which is their public home.
* text.py holds the two text helpers the modules above share.
"""

from selfcode.errors import LLMError
from selfcode.llm.factory import make_llm
from selfcode.llm.openai_client import OpenAILLM
from selfcode.llm.prices import PRICES, cost_of
from selfcode.llm.protocol import LLM, Message, Reply, Usage
from selfcode.llm.recording import RecordingLLM
from selfcode.llm.replay import ReplayDiverged, ReplayExhausted, ReplayLLM
from selfcode.llm.retry import ContextLengthError, EndpointUnreachable, RetriesExhausted

__all__ = [
    "LLM",
    "PRICES",
    "ContextLengthError",
    "EndpointUnreachable",
    "LLMError",
    "Message",
    "OpenAILLM",
    "RecordingLLM",
    "ReplayDiverged",
    "ReplayExhausted",
    "ReplayLLM",
    "Reply",
    "RetriesExhausted",
    "Usage",
    "cost_of",
    "make_llm",
]
