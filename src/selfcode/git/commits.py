"""What selfcode writes into git for a candidate: commit messages, trailers, notes, identity.

Pure functions; store.py and worktree.py do the writing. Identity comes from
`[tool.selfcode.git]`.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Mapping
from typing import Any

from selfcode.config import GitConfig, load_settings
from selfcode.gate.verdict import Verdict
from selfcode.report.plots import series_of
from selfcode.report.units import fmt_cost, fmt_sample, fmt_speedup, median

_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def git_config_of(settings: object) -> GitConfig:
    """The settings' `git` section; without settings, the defaults and SELFCODE_GIT_* vars."""
    section = getattr(settings, "git", None)
    return section if isinstance(section, GitConfig) else load_settings(None).git


def title_of(rationale: str, fallback: str) -> str:
    """A one-line summary (<= 72 characters) from the first sentence of the rationale."""
    first = rationale.strip().split("\n", 1)[0].strip() if rationale.strip() else ""
    first = _SENTENCE_END.split(first, 1)[0].rstrip(".:; ")
    if not first:
        return fallback
    word = first.split(" ", 1)[0]
    if word.isalpha():  # an identifier such as `squares()` keeps its case
        first = first[0].upper() + first[1:]
    if len(first) > 72:
        first = first[:71].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return first


def _wrap(text: str) -> str:
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    return "\n\n".join(textwrap.fill(" ".join(p.split()), 72) for p in paragraphs)


def tests_line(verdict: Verdict) -> str:
    t = verdict.tests
    if t is None:
        return "n/a"
    c = t.candidate
    return f"{c.passed} passed, {c.failed} failed, {c.skipped} skipped"


def measured_lines(verdict: Verdict) -> list[str]:
    """The measured deltas, one line per benchmark, plus the tests."""
    lines = []
    for bench in verdict.benchmarks:
        for s in series_of(bench):
            if s.ratio is None:
                lines.append(f"  {s.name}: {s.verdict}")
                continue
            base, cand = median(s.baseline) or 0.0, median(s.candidate) or 0.0
            p = f", p={s.p_value:.2g}" if s.p_value is not None else ""
            runs = f"{len(s.baseline)} paired runs" if len(s.baseline) > 1 else "1 run each"
            change = fmt_speedup(s.ratio)
            if s.metric == "instructions":
                change = change.replace("faster", "fewer").replace("slower", "more")
            lines.append(f"  {s.name}: {fmt_sample(s.metric, base)} -> "
                         f"{fmt_sample(s.metric, cand)} median {s.metric}, "
                         f"{change}{p}, {runs}")
    t = verdict.tests
    if t is not None:
        same = "none lost, none newly failing or skipped" if not (
            t.lost or t.newly_failing or t.newly_skipped) else "REGRESSIONS"
        lines.append(f"  tests: {t.candidate.passed} passed, {t.candidate.failed} failed, "
                     f"{t.candidate.skipped} skipped (baseline {t.baseline.passed}/"
                     f"{t.baseline.failed}/{t.baseline.skipped}); {same}")
    return lines


def candidate_message(run_id: str, n: int, rationale: str, verdict: Verdict | None,
                      status: str, model: str, usage: Mapping[str, Any],
                      git: GitConfig) -> tuple[str, list[tuple[str, str]]]:
    """Message and trailers of a candidate's commit; accepted ones go on the run's branch."""
    title = title_of(rationale, f"selfcode candidate {n}")
    if status != "accepted":
        title = f"[{status}] {title}"[:80]
    parts = [title]
    if rationale.strip():
        parts.append(_wrap(rationale))
    if verdict is not None:
        where = f"sandbox {verdict.sandbox}" if verdict.sandbox else "the sandbox"
        parts.append(f"Measured by selfcode in {where}, goal {verdict.goal}:\n"
                     + "\n".join(measured_lines(verdict)))
        if verdict.reasons:
            parts.append("Rejected because:\n" + "\n".join(f"  - {r}" for r in verdict.reasons))
    tokens = int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))
    cost = fmt_cost(float(usage.get("cost_usd", 0.0)), known=not usage.get("unpriced"))
    parts.append(f"Model {model}: {tokens} tokens, {cost}.")
    speedup = verdict.speedup() if verdict else None
    trailers = [
        ("Selfcode-Run", run_id),
        ("Selfcode-Candidate", str(n)),
        ("Selfcode-Status", status),
        ("Selfcode-Speedup", f"{speedup:.2f}x" if speedup else "n/a"),
        ("Selfcode-Tests", tests_line(verdict) if verdict else "n/a"),
        ("Selfcode-Model", model),
        *co_author_trailers(git),
    ]
    return "\n\n".join(parts), trailers


def co_author_trailers(git: GitConfig) -> list[tuple[str, str]]:
    """`Co-authored-by`: selfcode when someone else is the author, then the configured ones."""
    out = []
    if git.attribution and git.attribution.strip() != git.author.strip():
        out.append(("Co-authored-by", git.attribution.strip()))
    out.extend(("Co-authored-by", c) for c in git.co_authors)
    return out


def note_json(run_id: str, n: int, status: str, verdict: Verdict | None, model: str,
              usage: Mapping[str, Any], rationale: str = "", goal: str = "",
              review: Mapping[str, Any] | None = None) -> str:
    """The git note kept on every candidate commit (refs/notes/selfcode).

    It carries what a clone needs to show the candidate without selfcode's history database.
    """
    data: dict[str, Any] = {
        "selfcode": 1, "run": run_id, "candidate": n, "status": status, "model": model,
        "goal": goal, "rationale": rationale,
        "tokens": {"prompt": int(usage.get("prompt_tokens", 0)),
                   "completion": int(usage.get("completion_tokens", 0))},
        "cost_usd": round(float(usage.get("cost_usd", 0.0)), 6),
        "verdict": verdict.model_dump() if verdict else None,
    }
    if usage.get("unpriced"):
        data["unpriced"] = True  # cost_usd counts only the priced replies
    if review:
        data["review"] = dict(review)
    return json.dumps(data, indent=1, sort_keys=False) + "\n"
