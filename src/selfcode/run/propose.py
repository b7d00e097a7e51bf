"""One candidate's conversation with the model: prompt, ask, parse, repair.

Format errors go back to the model (at most `repair_turns` times); a prompt too long for the
model's context is trimmed once and asked again. Every exchange is recorded before anything
else happens with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from selfcode.edits import choose_format, parse_and_apply, read_tree, render_diff
from selfcode.errors import EditError
from selfcode.gate.judge import Judge
from selfcode.gate.protected import protected_violations
from selfcode.history.rows import Exchange
from selfcode.llm import LLM, ContextLengthError, Message, Reply
from selfcode.prompt.context import Attempt, editable_sources, repo_map
from selfcode.prompt.render import render
from selfcode.prompt.rules import GateRules
from selfcode.prompt.trim import PromptSections, trim_context
from selfcode.run.context import Run


@dataclass
class Proposal:
    rationale: str = ""
    diff: str = ""
    error: str | None = None


class Proposer:
    def __init__(self, run: Run, llm: LLM, *, entry_points: list[str], judge: Judge) -> None:
        """Asks `llm` for candidates of `run`; every reply is charged to the run's ledger.

        `entry_points` are the files the prompt shows first; `judge` is what the prompt's
        rules are read from (its configuration and calibration)."""
        self.ctx, self.llm = run, llm
        self.settings, self.worktree = run.settings, run.worktree
        self.entry_points, self.judge = entry_points, judge
        self.edit_format = choose_format(self.settings.llm.model, self.settings.llm.edit_format,
                                         self.settings.llm.formats)

    def sections(self, attempts: list[Attempt]) -> PromptSections[Attempt]:
        root, files = self.worktree.path, self.worktree.list_files()
        sources = editable_sources(root, files, self.entry_points, self.settings.gate.protected,
                                   self.settings.agent.max_context_chars)
        return PromptSections(files=sources, attempts=attempts, repo_map=repo_map(root, files))

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
            attempts=list(sections.attempts), files_omitted=sections.files_omitted,
        )
        system = render("system", rules=rules, edit_format=self.edit_format)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def propose(self, n: int, attempts: list[Attempt],
                between_turns: Callable[[], None]) -> Proposal:
        sections = self.sections(attempts)
        messages = self.messages(sections)
        error, rationale = "no reply", ""
        for turn in range(self.settings.agent.repair_turns + 1):
            if turn:
                between_turns()
            try:
                reply = self._ask(n, turn, messages)
            except ContextLengthError as exc:
                self.ctx.observer.event("warning", f"The prompt is too long for the model; "
                                        f"trimming it to {exc.factor:.0%} and asking again.")
                sections = trim_context(sections, exc.factor)
                messages = self.messages(sections)
                reply = self._ask(n, turn, messages)
            try:
                rationale, old, new = parse_and_apply(
                    reply.text, self.edit_format,
                    # Read through the policy: a path through a symlink is refused, not followed.
                    lambda paths: read_tree(self.worktree.path, paths))
                return Proposal(rationale=rationale, diff=render_diff(old, new))
            except EditError as exc:
                error = str(exc)
                self.ctx.history.add_event(self.ctx.run_id, "edit-error", error, candidate_n=n)
                self.ctx.observer.event("repair", error, n=n, turn=turn)
                messages = [*messages, {"role": "assistant", "content": reply.text},
                            {"role": "user", "content": render(
                                "repair", error=error, edit_format=self.edit_format)}]
        return Proposal(rationale=rationale, error=f"no usable edit after repairs: {error}")

    def _ask(self, n: int, turn: int, messages: list[Message]) -> Reply:
        started = time.perf_counter()
        try:
            reply = self.llm.complete(messages)
        except Exception as exc:
            self.ctx.history.add_exchange(Exchange(
                run_id=self.ctx.run_id, candidate_n=n, turn=turn, model=self.llm.model,
                messages=messages, reply="", prompt_tokens=0, completion_tokens=0,
                cost_usd=0.0, latency_s=time.perf_counter() - started, error=str(exc)))
            raise
        self.ctx.history.add_exchange(Exchange(
            run_id=self.ctx.run_id, candidate_n=n, turn=turn, model=reply.model, messages=messages,
            reply=reply.text, prompt_tokens=reply.usage.prompt_tokens,
            completion_tokens=reply.usage.completion_tokens, cost_usd=reply.cost_usd,
            latency_s=reply.latency_s))
        self.ctx.charge(reply)
        return reply
