"""A run and its candidates as a reviewer sees them: one model built from history and git.

`selfcode runs`, `show`, `review` and `report` all read this, so they agree, and `--json`
prints exactly it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, computed_field

from selfcode.errors import SelfcodeError
from selfcode.gate.verdict import Verdict
from selfcode.git.archive import candidate_ref
from selfcode.git.commits import title_of
from selfcode.git.store import GitStore
from selfcode.history.db import History
from selfcode.history.rows import CandidateUsage, ModelUsage, ReviewRow
from selfcode.history.tree import TreeNode, build_tree, parent_numbers
from selfcode.search.bandit import ModelStats


class Usage(BaseModel):
    model: str = ""
    exchanges: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    priced: bool = True
    """False when some reply had no price: `cost_usd` then counts only the priced ones."""


class ModelFigures(BaseModel):
    """One model's share of a run (`--model a,b,c`): what it was asked and what it earned."""

    model: str
    candidates: int = 0
    """Candidates whose last exchange was with this model."""
    requests: int = 0
    """Exchanges with it (first requests and repair turns, failed ones included)."""
    accepted: int = 0
    cost_usd: float | None = 0.0
    """None when some reply had no price: the cost is unknown, not zero."""
    unpriced: int = 0
    """Replies without a price."""

    def stats(self) -> ModelStats:
        """What the model bandit knew of this model (`ModelPool.restore`, on --resume); an
        unknown cost counts only through `unpriced`."""
        return ModelStats(requests=self.requests, accepted=self.accepted,
                          cost_usd=self.cost_usd or 0.0, unpriced=self.unpriced)


class Review(BaseModel):
    decision: str
    reviewer: str
    note: str = ""
    at: str


class CandidateView(BaseModel):
    run_id: str
    n: int
    status: str
    title: str
    rationale: str = ""
    diff: str = ""
    parent_commit: str | None = None
    parent: int | None = Field(default=None, description="the candidate it was built on "
                               "(0: the baseline), from parent_commit; None when unknown")
    commit: str | None = Field(default=None, description="an accepted candidate's commit: on "
                               "the run's branch, or beside it on another lineage")
    on_final_branch: bool | None = Field(
        default=None, description="whether the run's branch holds `commit` (git's reading); "
        "None when the branch was not read")
    candidate_commit: str | None = None
    ref: str | None = None
    verdict: Verdict | None = None
    speedup: float | None = None
    usage: Usage = Field(default_factory=Usage)
    review: Review | None = None
    created_at: str = ""
    reasons: list[str] = Field(default_factory=list,
                               description="why it is not on the branch: the verdict's reasons, "
                               "or the last reply error of a malformed candidate")

    @property
    def on_branch(self) -> bool:
        """Accepted and on the run's branch: its commit in the branch's history when git was
        read (an accepted candidate of another lineage is not), else any accepted commit."""
        return (self.status == "accepted" and self.commit is not None
                and self.on_final_branch is not False)


class RunView(BaseModel):
    run_id: str
    repo: str
    branch: str
    base_commit: str
    branch_head: str | None = None
    goal: str
    model: str
    sandbox: str
    status: str
    started_at: str
    finished_at: str | None = None
    stop_reason: str = ""
    wall_s: float = 0.0
    candidates: list[CandidateView] = Field(default_factory=list)
    accepted: int = 0
    best_speedup: float | None = None
    cost_usd: float = 0.0
    cost_known: bool = True
    """False when some reply had no price, so `cost_usd` is not the whole cost."""
    tokens: int = 0
    models: list[ModelFigures] = Field(default_factory=list)
    """Per model: candidates, requests, accepted and cost, busiest first."""

    def candidate(self, n: int) -> CandidateView:
        for cand in self.candidates:
            if cand.n == n:
                return cand
        raise SelfcodeError(f"Run {self.run_id} has no candidate {n}; it has "
                            f"{len(self.candidates)}.")

    @property
    def on_branch(self) -> list[CandidateView]:
        return [c for c in self.candidates if c.on_branch]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tree(self) -> TreeNode:
        """The candidates as a tree: the baseline at the root, each under its parent."""
        return build_tree(self.base_commit, self.candidates)


def tests_cell(candidate: CandidateView, missing: str = "\u2013") -> str:
    """The candidate's test counts as 'passed/failed/skipped'; `missing` (by default the
    en dash the reports print for no value) if it was not tested."""
    tests = candidate.verdict.tests if candidate.verdict else None
    if tests is None:
        return missing
    return f"{tests.candidate.passed}/{tests.candidate.failed}/{tests.candidate.skipped}"


def best_speedup(best: float | None, speedup: float | None) -> float | None:
    """The best speedup so far once a candidate with `speedup` is on the branch.

    One rule for the run's report, its summary and a resumed run's counters: a candidate
    without a measured speedup leaves the best as it was.
    """
    return speedup if speedup and (best or 0) < speedup else best


def resolve_run(history: History, spec: str) -> str:
    """A run id from 'latest', a full id or a unique prefix of one."""
    ids = [r.id for r in history.runs()]
    if not ids:
        raise SelfcodeError("This repository has no selfcode runs yet; start one with "
                            "`selfcode improve`.")
    if spec in ("latest", "last", "@"):
        return ids[0]
    if spec in ids:
        return spec
    matches = [i for i in ids if i.startswith(spec)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise SelfcodeError(f"'{spec}' names {len(matches)} runs; give more of the run id.")
    raise SelfcodeError(f"There is no run '{spec}' in this repository; `selfcode runs` "
                        "lists them.")


def split_spec(spec: str) -> tuple[str, int | None]:
    """'RUN/N' -> (RUN, N); 'RUN' -> (RUN, None)."""
    run, _, n = spec.partition("/")
    if not n:
        return run, None
    if not n.isdigit():
        raise SelfcodeError(f"'{spec}' is not RUN or RUN/N (N is a candidate number).")
    return run, int(n)


def _review(row: ReviewRow | None) -> Review | None:
    if row is None:
        return None
    return Review(decision=row.decision, reviewer=row.reviewer, note=row.note,
                  at=row.created_at)


def _usage(row: CandidateUsage | None, legacy_unpriced: bool) -> Usage:
    """A candidate's usage. `legacy_unpriced`: the run was recorded before unpriced replies
    were stored as such (its summary says the cost is not known, yet no reply lacks a
    cost), so a candidate that cost $0 was unpriced: a priced model never answers for
    nothing, and a replay is priced."""
    if row is None:
        return Usage()
    usage = Usage.model_validate(row, from_attributes=True)
    usage.priced = not row.unpriced and not (legacy_unpriced and row.cost_usd == 0)
    return usage


def model_figures(usage: list[ModelUsage], statuses: dict[int, str],
                  legacy_unpriced: bool = False) -> list[ModelFigures]:
    """Each model's requests, cost, candidates and accepted candidates, from the exchanges.

    A candidate counts for the model of its last exchange (the one whose reply was judged);
    `statuses` are the candidates' statuses by number. `legacy_unpriced` as for `_usage`: a
    run recorded before unpriced replies were NULL, whose model cost $0, was unpriced.
    """
    figures: dict[str, ModelFigures] = {}
    last: dict[int, ModelUsage] = {}
    for row in usage:
        fig = figures.setdefault(row.model, ModelFigures(model=row.model))
        fig.requests += row.exchanges
        fig.unpriced += row.unpriced
        if fig.cost_usd is not None:  # once unknown, it stays unknown
            fig.cost_usd = None if row.unpriced else fig.cost_usd + row.cost_usd
        if row.n is not None and (row.n not in last or last[row.n].last_id < row.last_id):
            last[row.n] = row
    for n, row in last.items():
        figures[row.model].candidates += 1
        figures[row.model].accepted += statuses.get(n) == "accepted"
    for fig in figures.values():
        if legacy_unpriced and fig.cost_usd == 0:
            fig.cost_usd = None
    return sorted(figures.values(), key=lambda f: (-f.requests, f.model))


def load_run(history: History, run_id: str, store: GitStore | None = None) -> RunView:
    run = history.run(run_id)
    if run is None:
        raise SelfcodeError(f"There is no run '{run_id}' in this repository.")
    summary: dict[str, Any] = run.summary or {}
    usage = history.candidate_usage(run_id)
    decisions = history.decisions(run_id)
    view = RunView(
        run_id=run_id, repo=run.repo, branch=run.branch, base_commit=run.base_commit,
        goal=run.goal, model=run.model, sandbox=run.sandbox, status=run.status,
        started_at=run.started_at, finished_at=run.finished_at,
        stop_reason=str(summary.get("stop_reason", "")),
        wall_s=float(summary.get("wall_s", 0.0) or 0.0),
        cost_usd=history.total_cost(run_id),
        cost_known=bool(summary.get("cost_known", True)),
    )
    if store is not None:
        view.branch_head = store.ref_sha(f"refs/heads/{run.branch}")
    legacy_unpriced = not view.cost_known and not any(u.unpriced for u in usage.values())
    reply_errors: dict[int, str] = {}
    for event in history.events(run_id):
        if event.kind == "edit-error" and event.candidate_n is not None:
            reply_errors[event.candidate_n] = event.message
    for row in history.candidates(run_id):
        verdict = Verdict.model_validate(row.verdict) if row.verdict else None
        n = row.n
        reasons = (verdict.reasons if verdict else
                   [f"no usable edit: {reply_errors[n]}"] if n in reply_errors else [])
        cand = CandidateView(
            run_id=run_id, n=n, status=row.status,
            title=title_of(row.rationale or "", f"candidate {n}"),
            rationale=row.rationale or "", diff=row.diff or "",
            parent_commit=row.parent_commit, commit=row.commit_sha,
            candidate_commit=row.candidate_commit,
            ref=candidate_ref(run_id, n) if row.candidate_commit else None,
            verdict=verdict, speedup=verdict.speedup() if verdict else None,
            usage=_usage(usage.get(n), legacy_unpriced),
            review=_review(decisions.get(n)), created_at=row.created_at, reasons=reasons,
        )
        view.candidates.append(cand)
        view.tokens += cand.usage.prompt_tokens + cand.usage.completion_tokens
        view.cost_known &= cand.usage.priced
        if cand.status == "accepted":
            view.accepted += 1
    view.models = model_figures(history.model_usage(run_id),
                                {c.n: c.status for c in view.candidates}, legacy_unpriced)
    _place(view, store)
    for cand in view.on_branch:
        view.best_speedup = best_speedup(view.best_speedup, cand.speedup)
    return view


OFF_BRANCH = ("accepted, on another lineage than the one the run's branch ends in; kept "
              "under its ref")


def _place(view: RunView, store: GitStore | None) -> None:
    """Each candidate's parent, and whether the branch holds its commit: with the archive's
    search an accepted candidate may be committed beside the branch, on another lineage."""
    parents = parent_numbers(view.base_commit, view.candidates)
    for cand in view.candidates:
        cand.parent = parents[cand.n]
    if store is None or view.branch_head is None:
        return  # no branch to read (deleted after a run without commits, or merged away)
    try:
        held = store.commits_between(view.base_commit, view.branch_head)
    except SelfcodeError:
        return  # the base commit is gone (a rewritten history): the old rule stands
    for cand in view.candidates:
        if cand.status == "accepted" and cand.commit is not None:
            cand.on_final_branch = cand.commit in held
            if not cand.on_final_branch and not cand.reasons:
                cand.reasons = [OFF_BRANCH]
