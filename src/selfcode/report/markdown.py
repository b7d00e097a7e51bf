"""The Markdown report of a run: what a pull-request body should contain.

It answers, for a reviewer who was not there: what changed (diffs), why (the model's
rationale), how we know it is faster (every benchmark sample, the paired test) and still
correct (test counts against the baseline), and what it cost (tokens, money, time).
"""

from __future__ import annotations

import re
from html import escape as _html_text

from selfcode.gate.verdict import Verdict
from selfcode.history.tree import BASELINE, TreeNode
from selfcode.history.views import CandidateView, ModelFigures, RunView, tests_cell
from selfcode.prompt.context import clip
from selfcode.prompt.profile import COLUMNS, hotspot_rows, notes
from selfcode.report.plots import series_of, single_run_note, text_plot
from selfcode.report.units import fmt_cost, fmt_sample, fmt_speedup, median
from selfcode.sandbox.results import ProfileRun

DEFAULT_MAX_CHARS = 60_000  # GitHub refuses pull-request bodies over 65,536 characters


def headline(view: RunView) -> str:
    kept = view.on_branch
    if not kept:
        return f"selfcode: no proven improvement in {len(view.candidates)} candidates"
    noun = "improvement" if len(kept) == 1 else "improvements"
    best = max(kept, key=lambda c: c.speedup or 0.0)
    claim = f", best {speed_cell(best)}" if best.speedup else ""
    return f"selfcode: {len(kept)} proven {noun}{claim}"


def tests_sentence(verdict: Verdict | None) -> str:
    if verdict is None or verdict.tests is None:
        return "not run"
    t = verdict.tests
    b, c = t.baseline, t.candidate
    problems = [f"{len(ids)} {label}" for label, ids in (
        ("lost", t.lost), ("newly failing", t.newly_failing), ("newly skipped", t.newly_skipped))
        if ids]
    verdict_text = ("none lost, none newly failing or skipped" if not problems
                    else ", ".join(problems))
    fixed = f", {len(t.fixed)} fixed" if t.fixed else ""
    return (f"{c.passed} passed, {c.failed} failed, {c.skipped} skipped (baseline: {b.passed} "
            f"passed, {b.failed} failed, {b.skipped} skipped); {verdict_text}{fixed}")


def equivalence_sentence(verdict: Verdict | None) -> str:
    """What the out-of-process comparison with the baseline found; "" when it did not run."""
    e = verdict.equivalence if verdict is not None else None
    if e is None:
        return ""
    checked = len(e.functions) - len(e.not_checked)
    text = f"{checked} changed function(s) called on {e.inputs_tried} inputs on both trees"
    if e.counterexample is not None:
        c = e.counterexample
        text += f"; they differ: {c.input} {c.candidate}, the baseline {c.baseline}"
    elif checked:
        text += ", all alike"
    if e.not_checked:
        text += "; not checked: " + "; ".join(f"{k} ({why})" for k, why in e.not_checked.items())
    return text


def usage_sentence(cand: CandidateView) -> str:
    u = cand.usage
    return (f"{u.model or 'model unknown'}, {u.exchanges} exchange(s), "
            f"{u.prompt_tokens + u.completion_tokens:,} tokens, {fmt_cost(u.cost_usd, u.priced)}")


MODEL_COLUMNS = ("model", "candidates", "requests", "accepted", "cost")


def model_cells(fig: ModelFigures) -> tuple[str, ...]:
    """One model's row of the per-model table; its cost reads 'unpriced' when unknown."""
    cost = "unpriced" if fig.cost_usd is None else fmt_cost(fig.cost_usd)
    return (fig.model, str(fig.candidates), str(fig.requests), str(fig.accepted), cost)


def models_md(view: RunView) -> list[str]:
    """The per-model table of a run that asked several models; nothing for one."""
    if len(view.models) < 2:
        return []
    return ["### Models", "", "| " + " | ".join(MODEL_COLUMNS) + " |",
            "|" + "---|" * len(MODEL_COLUMNS),
            *("| " + " | ".join(_cell(c) for c in model_cells(f)) + " |" for f in view.models),
            ""]


def speed_cell(cand: CandidateView) -> str:
    """The candidate's best measured gain, in the metric it was measured in."""
    v = cand.verdict
    if v is None or not v.benchmarks:
        return "–"
    best = min((b for b in v.benchmarks if b.ratio), key=lambda b: b.ratio or 1.0, default=None)
    if best is None:
        return v.benchmarks[0].verdict
    text = fmt_speedup(best.ratio)
    if best.metric == "instructions":
        text = text.replace("faster", "fewer instructions").replace("slower", "more instructions")
        cpu = next((s for s in series_of(best)[1:] if s.ratio), None)
        if cpu is not None:
            text += f" ({fmt_speedup(cpu.ratio)} in CPU time)"
    return text


REASON_CHARS = 120
"""The most of a reason a heading or a table cell shows; the candidate's page has it all."""


def first_reason(cand: CandidateView, limit: int = REASON_CHARS) -> str:
    """Why the candidate is not on the branch, in one line: its first reason, cut at a word
    boundary, or "no reason recorded"."""
    first = next((r.strip() for r in cand.reasons if r.strip()), "")
    return clip(first, limit) if first else "no reason recorded"


def outcome_cell(cand: CandidateView) -> str:
    """What the candidate came to, for a heading: its measured change, else why it was not
    kept (never a bare dash)."""
    speed = speed_cell(cand)
    if speed != "–":
        return speed
    return "no speed measured" if cand.status == "accepted" else first_reason(cand)


ON_BRANCH = "on the branch"
"""The marker of the tree's nodes the run's branch holds (its lineage)."""


def tree_label(view: RunView, node: TreeNode) -> str:
    """One node of the tree of candidates as one line of plain text: the candidate, its
    status, what it came to and its title; the root is the baseline's commit."""
    if node.n == BASELINE:
        return f"baseline {view.base_commit[:10]}"
    cand = view.candidate(node.n)
    built_on = ("" if node.parent is not None else
                f" (built on {cand.parent_commit[:10]}, none of this run's commits)"
                if cand.parent_commit else " (built on an unrecorded commit)")
    # The title is the model's words, quoted: a title that reads like a marker stays a title.
    return (f"candidate {node.n}: {cand.status}, {outcome_cell(cand)} — "
            f"\u201c{cand.title}\u201d{built_on}")


def tree_legend(branch: str) -> str:
    """What the tree shows; `branch` is the run's branch as the format writes code."""
    return (f"Each candidate under the one it was built on; \u201c{ON_BRANCH}\u201d marks the "
            f"lineage {branch} ends in.")


def tree_md(view: RunView) -> list[str]:
    """The tree of candidates as a nested list; the candidates' words are literal text."""
    if not view.candidates:
        return []
    out = ["### Tree of candidates", "", tree_legend(f"`{view.branch}`"), ""]
    for depth, node in view.tree.walk():
        mark = f" \u2190 **{ON_BRANCH}**" if node.on_branch and node.n != BASELINE else ""
        out.append(f"{'  ' * depth}- {_md_text(tree_label(view, node))}{mark}")
    return [*out, ""]


def _md_text(text: str) -> str:
    """`text` as one line of literal Markdown: HTML escaped, emphasis, code and link marks
    backslashed, so none of the candidate's words can look like selfcode's bold marker."""
    return re.sub(r"([\\`*_\[\]~])", r"\\\1", _html_text(" ".join(text.split())))


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def _fence(text: str, lang: str = "") -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}"


def evidence_md(verdict: Verdict) -> list[str]:
    out = ["| measurement | metric | baseline median | candidate median | change | p | runs |",
           "|---|---|---|---|---|---|---|"]
    for b in verdict.benchmarks:
        for s in series_of(b):
            mb, mc = median(s.baseline), median(s.candidate)
            out.append(f"| {_cell(s.name)} | {s.metric} | "
                       f"{fmt_sample(s.metric, mb) if mb is not None else '–'} | "
                       f"{fmt_sample(s.metric, mc) if mc is not None else '–'} | "
                       f"{fmt_speedup(s.ratio) if s.ratio else s.verdict} | "
                       f"{f'{s.p_value:.2g}' if s.p_value is not None else '–'} | "
                       f"{len(s.baseline)} + {len(s.candidate)} |")
    for b in verdict.benchmarks:
        series = series_of(b)
        notes = [note for s in series if (note := single_run_note(s)) is not None]
        plots = [text_plot(s) for s in series if single_run_note(s) is None]
        out += [x for note in notes for x in ("", _cell(note))]
        out += ["", _fence("\n\n".join(plots))] if plots else []
    return out


def _candidate(view: RunView, cand: CandidateView, diff_budget: int) -> list[str]:
    v = cand.verdict
    where = (f"commit `{cand.commit[:10]}` on `{view.branch}`" if cand.on_branch and cand.commit
             else "not on the branch")
    out = [f"### Candidate {cand.n}: {_cell(cand.title)} — {_cell(outcome_cell(cand))}", ""]
    if cand.rationale.strip():
        out += ["**Why** (the model's rationale):", ""]
        lines = cand.rationale.strip().splitlines()
        out += [f"> {line}" if line.strip() else ">" for line in lines]
        out.append("")
    if v is not None and v.benchmarks:
        out += ["**Evidence** (paired runs, baseline and candidate back to back):", ""]
        out += [*evidence_md(v), ""]
    out += [f"**Tests**: {tests_sentence(v)}.", ""]
    if equivalence_sentence(v):
        out += [f"**Behaviour**: {_cell(equivalence_sentence(v))}.", ""]
    out += [
            f"**Cost**: {usage_sentence(cand)}; judged in {v.timings.get('total', 0):.1f} s "
            f"({v.sandbox} sandbox)." if v else f"**Cost**: {usage_sentence(cand)}.", "",
            f"**Commit**: {where}; candidate ref `{cand.ref or 'none'}`.", ""]
    if cand.review:
        out += [f"**Review**: {cand.review.decision} by {_cell(cand.review.reviewer)}"
                + (f" — {_cell(cand.review.note)}" if cand.review.note else ""), ""]
    out += _diff_block(cand, diff_budget)
    return out


def _diff_block(cand: CandidateView, budget: int) -> list[str]:
    if not cand.diff:
        return []
    v = cand.verdict
    stats = (f"(+{v.patch.added} −{v.patch.removed} in {', '.join(v.patch.files)})"
             if v and v.patch.files else "")
    diff = cand.diff
    if len(diff) > budget:
        diff = diff[: max(budget, 0)].rsplit("\n", 1)[0] + "\n... (diff truncated; see the commit)"
    return [f"<details><summary>Diff {_cell(stats)}</summary>", "", _fence(diff, "diff"), "",
            "</details>", ""]


def hotspots_md(profile: ProfileRun | None) -> list[str]:
    """Where the baseline's time went (its profile at the start of the run), as a table."""
    rows = hotspot_rows(profile)
    if not rows:
        return []
    return ["### Where the time goes (the baseline's profile: what candidates were aimed at)",
            "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS),
            *("| " + " | ".join(_cell(c) for c in r.cells()) + " |" for r in rows), "",
            *(f"- {_cell(n)}" for n in notes(profile)), ""]


def render_markdown(view: RunView, max_chars: int = DEFAULT_MAX_CHARS,
                    profile: ProfileRun | None = None) -> str:
    """The report; diffs are shortened first when it would exceed `max_chars`. `profile`:
    the baseline's hotspots, shown after the candidates' table."""
    table = hotspots_md(profile)
    for budget in (max_chars, max_chars // 4, 2_000, 0):
        text = _render(view, budget, table)
        if len(text) <= max_chars:
            return text
    return text[: max_chars - 40] + "\n\n... (report truncated)\n"


def _render(view: RunView, diff_budget: int, hotspots: list[str]) -> str:
    kept = view.on_branch
    out = [f"## {headline(view)}", "",
           f"Run `{view.run_id}` on `{view.repo}`, from `{view.base_commit[:10]}` to branch "
           f"`{view.branch}`. Goal: {_cell(view.goal)}", "",
           f"Model `{view.model}`, {view.sandbox} sandbox. {len(view.candidates)} candidates, "
           f"{view.accepted} accepted by the gate, {len(kept)} on the branch. Cost "
           f"{fmt_cost(view.cost_usd, view.cost_known)} for {view.tokens:,} tokens; "
           f"{view.wall_s:.1f} s. "
           f"Status: {view.status}" + (f" ({_cell(view.stop_reason)})." if view.stop_reason
                                       else "."), "",
           "| # | status | change | speed | tests | files | review |",
           "|---|---|---|---|---|---|---|"]
    for c in view.candidates:
        v = c.verdict
        tests = tests_cell(c)
        files = ", ".join(v.patch.files) if v and v.patch.files else "–"
        out.append(f"| {c.n} | {c.status} | {_cell(c.title)} | {speed_cell(c)} | {tests} | "
                   f"{_cell(files)} | {c.review.decision if c.review else ''} |")
    out += ["", "Tests are passed/failed/skipped. Every accepted candidate passed the same "
            "tests as the baseline and was re-checked in a fresh sandbox before its commit.", "",
            *tree_md(view), *models_md(view), *hotspots]
    per = diff_budget // max(len(kept), 1)
    for cand in kept:
        out += _candidate(view, cand, per)
    others = [c for c in view.candidates if not c.on_branch]
    if others:
        out += ["### Not on the branch", ""]
        for c in others:
            reasons = "; ".join(c.reasons) or "no reason recorded"
            # Inside an HTML element, so escaped as HTML: the title and reasons are the
            # candidate's words (a test id, the model's rationale).
            out += [f"<details><summary>Candidate {c.n}: {_html_text(_cell(c.title))} — "
                    f"{c.status}: "
                    f"{_html_text(first_reason(c))}</summary>", "", _html_text(_cell(reasons)), "",
                    *_diff_block(c, diff_budget // 8 if diff_budget else 0), "</details>", ""]
    out += ["---", "",
            f"Review locally: `git fetch origin '+refs/selfcode/*:refs/selfcode/*' "
            f"'+refs/notes/selfcode:refs/notes/selfcode'`, then `selfcode show {view.run_id}/N` "
            f"or `selfcode review {view.run_id}`.", ""]
    return "\n".join(out)
