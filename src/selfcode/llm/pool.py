"""`ModelPool`: the models of `--model a,b,c`, one client each, and which to ask next.

Each candidate's conversation is asked of one model, its repair turns included: `choose`
picks the model (the cost-aware bandit of `search/bandit.py`: acceptances per dollar, with a
floor of exploration) and returns a `Conversation`, an `LLM` that counts each request it
sends and charges each reply to that model. The first request is counted by `choose` itself,
before it is sent, so that candidates chosen side by side spread over untried models, and a
model whose every request fails is not chosen forever: its requests grow, its acceptances do
not. An unpriced reply is counted as such (its cost unknown, never $0). `settle` records the
candidate's verdict. The pool is shared by the candidates in flight: every use takes its lock.

A pool of one model asks no bandit: `choose` always returns that model.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from selfcode.config import LLMConfig
from selfcode.llm.factory import make_llm
from selfcode.llm.protocol import LLM, Message, Reply
from selfcode.search.bandit import ModelStats, choose

__all__ = ["Conversation", "ModelPool"]


class Conversation:
    """One candidate's conversation with the model `choose` picked: an `LLM` whose requests
    and replies are counted in the pool's figures for that model."""

    def __init__(self, pool: ModelPool, llm: LLM) -> None:
        self.model: str = llm.model
        self.llm = llm
        self._pool = pool
        self._sent = 0

    def __repr__(self) -> str:
        return f"Conversation({self.llm!r})"

    def complete(self, messages: Sequence[Message]) -> Reply:
        if self._sent:  # the first was counted when the model was chosen
            self._pool._count_request(self.model)
        self._sent += 1
        reply = self.llm.complete(messages)
        self._pool._charge(self.model, reply)
        return reply


class ModelPool:
    """One `LLM` per model name; `choose`, `settle`, `stats`, `restore` are thread-safe."""

    def __init__(self, llms: Mapping[str, LLM], floor: float = 0.1) -> None:
        if not llms:
            raise ValueError("a model pool needs at least one model")
        self._llms = dict(llms)
        self._stats = {name: ModelStats() for name in self._llms}
        self._floor = floor
        self._lock = threading.Lock()

    @classmethod
    def from_config(
        cls,
        config: LLMConfig,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[str], None] | None = None,
    ) -> ModelPool:
        """A client per model of `config.model` at its endpoint (`config.endpoints`, else
        `base_url`), each with the configured retries and recording; a replay is one model,
        whatever the list names, since it plays one recorded sequence."""
        if config.replay is not None:
            replay = make_llm(config, environ, sleep, on_retry)
            return cls({replay.model: replay})
        return cls({name: make_llm(config.for_model(name), environ, sleep, on_retry)
                    for name in config.models})

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self._llms)

    def client(self, model: str) -> LLM:
        """The client of `model`, uncounted: for what is not a candidate's request."""
        return self._llms[model]

    def __len__(self) -> int:
        return len(self._llms)

    def choose(self, rng: random.Random) -> Conversation:
        """The next candidate's conversation, with the model the bandit picks; its first
        request is counted now."""
        with self._lock:
            if len(self._llms) == 1:
                name = next(iter(self._llms))
            else:
                name = choose(self._stats, rng, floor=self._floor)
            self._stats[name] = self._stats[name].model_copy(
                update={"requests": self._stats[name].requests + 1})
            return Conversation(self, self._llms[name])

    def settle(self, model: str, accepted: bool) -> None:
        """The verdict on a candidate whose conversation was with `model`."""
        if accepted:
            with self._lock:
                self._stats[model] = self._stats[model].with_acceptance()

    def restore(self, stats: Mapping[str, ModelStats]) -> None:
        """Start from a resumed run's figures (models no longer in the pool are left out), so
        that the bandit goes on where it stopped instead of exploring again."""
        with self._lock:
            self._stats.update({name: s for name, s in stats.items() if name in self._stats})

    def stats(self) -> dict[str, ModelStats]:
        with self._lock:
            return dict(self._stats)

    # -- for Conversation -------------------------------------------------------------------

    def _count_request(self, model: str) -> None:
        with self._lock:
            self._stats[model] = self._stats[model].model_copy(
                update={"requests": self._stats[model].requests + 1})

    def _charge(self, model: str, reply: Reply) -> None:
        with self._lock:
            s = self._stats[model]
            self._stats[model] = (
                s.model_copy(update={"cost_usd": s.cost_usd + reply.cost_usd}) if reply.priced
                else s.model_copy(update={"unpriced": s.unpriced + 1}))
