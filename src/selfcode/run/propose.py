"""One candidate's conversation with the model: prompt, ask, parse, repair.

Format errors go back to the model (at most `repair_turns` times); a prompt too long for the
model's context is trimmed once and asked again, and the learned size is kept for the rest of
the run. Every exchange is recorded before anything else happens with it.

The context is built once per baseline (when the worktree's HEAD moves): the baseline's profile
(where each benchmark's time goes) is taken then, and every candidate is aimed at one of its
hot functions (prompt/targets.py), rotating over the hottest.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from selfcode.edits import (
    choose_format,
    parse_and_apply,
    read_tree,
    render_diff,
    reply_rationale,
)
from selfcode.errors import EditError, SelfcodeError
from selfcode.gate.judge import Judge
from selfcode.gate.protected import protected_violations
from selfcode.history.rows import Exchange
from selfcode.llm import LLM, ContextLengthError, Message, Reply
from selfcode.llm.pool import Conversation
from selfcode.prompt.attempts import shown_attempts
from selfcode.prompt.context import Attempt, peripheral
from selfcode.prompt.focus import ContextBuilder
from selfcode.prompt.render import render
from selfcode.prompt.rules import GateRules
from selfcode.prompt.targets import Target, choose_target, targets_of
from selfcode.prompt.trim import PromptSections, trim_context
from selfcode.run.context import Run
from selfcode.sandbox.results import ProfileRun

Profiler = Callable[["Parent"], ProfileRun]


@dataclass(frozen=True)
class Parent:
    """The state a candidate is built on, as the prompt reads it: `key` names it (a commit),
    `path` holds its files and `files` lists them."""

    key: str
    path: Path
    files: list[str]


@dataclass
class Proposal:
    rationale: str = ""
    diff: str = ""
    error: str | None = None


class Proposer:
    def __init__(self, run: Run, llm: LLM, *, entry_points: list[str], judge: Judge,
                 profiler: Profiler | None = None) -> None:
        """Asks `llm` for candidates of `run`; every reply is charged to the run's ledger.

        `entry_points` are the files the prompt shows when there is no target; `judge` is what
        the prompt's rules are read from (its configuration and calibration); `profiler`
        profiles the current baseline's benchmarks in the sandbox (None: no targets)."""
        self.ctx, self.llm = run, llm
        self.settings, self.worktree = run.settings, run.worktree
        self.entry_points, self.judge, self.profiler = entry_points, judge, profiler
        self.edit_format = choose_format(self.settings.llm.model, self.settings.llm.edit_format,
                                         self.settings.llm.formats)
        self.shrink = 1.0
        """The share of a full prompt the model's context took, learned from its overflows."""
        self.targets: list[Target] = []
        """The targets of the parent asked for last."""
        self.aimed: dict[int, str] = {}
        """Candidate number -> the key of the target it was aimed at."""
        self._builders: dict[str, tuple[ContextBuilder, list[Target]]] = {}
        self._lock = threading.RLock()

    def _refresh(self, parent: Parent) -> tuple[ContextBuilder, list[Target]]:
        """The context of `parent`: built, and profiled, once per parent (several threads
        may ask at once; the first builds it)."""
        with self._lock:
            if parent.key not in self._builders:
                builder = ContextBuilder(
                    parent.path, parent.files, self.settings.gate.protected,
                    self.settings.agent.max_context_chars, self.entry_points,
                    include_peripheral=self.judge.goal == "fix",
                    excerpts=self.edit_format != "whole")
                protected = self.settings.gate.protected
                targets = targets_of(self._profile(parent), lambda p: not peripheral(p)
                                     and not protected_violations([p], protected))
                self._builders[parent.key] = (builder, targets)
            builder, self.targets = self._builders[parent.key]
            return builder, self.targets

    def _profile(self, parent: Parent) -> ProfileRun | None:
        if self.profiler is None:
            return None
        self.ctx.observer.event("phase", "profiling the baseline's benchmarks")
        try:
            profile = self.profiler(parent)
        except SelfcodeError as exc:  # advisory: the run goes on, aimed less precisely
            self.ctx.observer.event("warning", f"Could not profile the benchmarks ({exc}); "
                                    "the prompt shows the code they import instead.")
            return None
        self.ctx.history.add_event(self.ctx.run_id, "profile", profile.model_dump_json())
        return profile

    def sections(self, attempts: list[Attempt], n: int = 0,
                 parent: Parent | None = None) -> PromptSections[Attempt]:
        """Candidate `n`'s context: aimed at the next target, cut to the learned size."""
        builder, targets = self._refresh(parent or self.worktree_parent())
        history = [(self.aimed[a.n], a.status) for a in attempts if a.n in self.aimed]
        target = choose_target(targets, history)
        if target is None:
            sections = builder.fallback(attempts)
        else:
            self.aimed[n] = target.key
            sections = builder.sections(target, self.targets, attempts)
        return trim_context(sections, self.shrink) if self.shrink < 1 else sections

    def rules(self) -> GateRules:
        """How the judge will judge, read from it each time: the calibration settles which
        metric each benchmark is judged by, and the model must be told that one."""
        judge = self.judge
        return GateRules.of(judge.config, judge.goal, judge.benchmarks, judge.calibration)

    def messages(self, sections: PromptSections[Attempt]) -> list[Message]:
        rules = self.rules()
        user = render(
            "propose", goal=self.settings.agent.goal, rules=rules,
            repo_map=sections.repo_map, files=sections.files,
            readonly=protected_violations(sections.files, rules.protected),
            **shown_attempts(sections, self.settings.agent.attempts_chars),
            files_omitted=sections.files_omitted,
            partial=sections.partial, target=sections.target,
        )
        system = render("system", rules=rules, edit_format=self.edit_format)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def worktree_parent(self) -> Parent:
        """The run's worktree as a parent: its HEAD, the state greedy search builds on."""
        return Parent(self.worktree.head(), self.worktree.path, self.worktree.list_files())

    def propose(self, n: int, attempts: list[Attempt], between_turns: Callable[[], None],
                parent: Parent | None = None, llm: LLM | None = None) -> Proposal:
        """Candidate `n`, built on `parent` (default: the worktree's HEAD) and asked of `llm`
        (default: the proposer's model); every repair turn asks the same model."""
        parent = parent or self.worktree_parent()
        llm = llm or self.llm
        sections = self.sections(attempts, n, parent)
        messages = self.messages(sections)
        error, rationale = "no reply", ""
        for turn in range(self.settings.agent.repair_turns + 1):
            if turn:
                between_turns()
            try:
                reply = self._ask(llm, n, turn, messages)
            except ContextLengthError as exc:
                self.ctx.observer.event("warning", f"The prompt is too long for the model; "
                                        f"trimming it to {exc.factor:.0%} and asking again.")
                self.shrink *= exc.factor  # every later candidate starts at the size that fits
                sections = trim_context(sections, exc.factor)
                messages = self.messages(sections)
                reply = self._ask(llm, n, turn, messages)
            try:
                rationale, old, new = parse_and_apply(
                    reply.text, self.edit_format,
                    # Read through the policy: a path through a symlink is refused, not followed.
                    lambda paths: read_tree(parent.path, paths))
                return Proposal(rationale=rationale, diff=render_diff(old, new))
            except EditError as exc:
                error = str(exc)
                # What the model meant is worth keeping even when its edit is not.
                rationale = reply_rationale(reply.text) or rationale
                self.ctx.history.add_event(self.ctx.run_id, "edit-error", error, candidate_n=n)
                self.ctx.observer.event("repair", error, n=n, turn=turn)
                messages = [*messages, {"role": "assistant", "content": reply.text},
                            {"role": "user", "content": render(
                                "repair", error=error, edit_format=self.edit_format)}]
        return Proposal(rationale=rationale, error=f"no usable edit after repairs: {error}")

    def _ask(self, llm: LLM, n: int, turn: int, messages: list[Message]) -> Reply:
        started = time.perf_counter()
        try:
            reply = llm.complete(messages)
        except Exception as exc:
            self.ctx.history.add_exchange(Exchange(
                run_id=self.ctx.run_id, candidate_n=n, turn=turn, model=llm.model,
                messages=messages, reply="", prompt_tokens=0, completion_tokens=0,
                cost_usd=0.0, latency_s=time.perf_counter() - started, error=str(exc)))
            raise
        self.ctx.history.add_exchange(Exchange(
            run_id=self.ctx.run_id, candidate_n=n, turn=turn, messages=messages,
            # One of several models: the pool's name for it, so its figures add up per model
            # (the server may answer with a dated name); alone, the name the server gave.
            model=llm.model if isinstance(llm, Conversation) else reply.model,
            reply=reply.text, prompt_tokens=reply.usage.prompt_tokens,
            completion_tokens=reply.usage.completion_tokens,
            cost_usd=reply.cost_usd if reply.priced else None,  # unknown, not free
            latency_s=reply.latency_s))
        self.ctx.charge(reply)
        return reply
