"""The HTML report of a run: one self-contained file (inline CSS and SVG, no script, no
network), the same content as the Markdown report plus real plots of every sample."""

from __future__ import annotations

from html import escape

from selfcode.gate.verdict import Verdict
from selfcode.history.tree import BASELINE, TreeNode
from selfcode.history.views import CandidateView, RunView, tests_cell
from selfcode.prompt.profile import COLUMNS, hotspot_rows, notes
from selfcode.report.markdown import (
    MODEL_COLUMNS,
    ON_BRANCH,
    equivalence_sentence,
    first_reason,
    headline,
    model_cells,
    outcome_cell,
    speed_cell,
    tests_sentence,
    tree_label,
    tree_legend,
    usage_sentence,
)
from selfcode.report.plots import bench_svg, series_of, single_run_note
from selfcode.report.units import fmt_cost, fmt_sample, fmt_speedup, median
from selfcode.sandbox.results import ProfileRun

CSS = """
body{font:15px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f4f5f7;
color:#1d2330}
main{max-width:1100px;margin:0 auto;padding:24px 32px 60px;background:#fff}
h1{font-size:26px;margin:0 0 6px}h2{font-size:20px;margin:36px 0 8px;border-bottom:1px solid
#e3e6ea;padding-bottom:4px}h3{font-size:16px;margin:18px 0 6px}
.meta{color:#555}.meta code{background:#f0f2f5;padding:1px 4px;border-radius:3px}
table{border-collapse:collapse;margin:10px 0;font-size:14px}
th,td{border:1px solid #dfe3e8;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#f6f7f9}
.accepted{color:#1a7f44;font-weight:600}.rejected{color:#b42318}.malformed,.abandoned{color:#8a6d1d}
.kpis{display:flex;gap:14px;flex-wrap:wrap;margin:16px 0}
.kpi{border:1px solid #e3e6ea;border-radius:8px;padding:10px 16px;min-width:130px}
.kpi b{display:block;font-size:22px}
blockquote{margin:8px 0;padding:6px 14px;border-left:4px solid #c8d0da;background:#f8f9fb}
pre.diff{background:#fbfbfc;border:1px solid #e3e6ea;padding:8px;overflow-x:auto;font:12.5px/1.45
ui-monospace,Menlo,Consolas,monospace}
pre.diff span{display:block;white-space:pre}.add{background:#e6ffec;color:#116329}
.del{background:#ffebe9;color:#82071e}.hunk{color:#0550ae;background:#ddf4ff}.file{font-weight:700}
svg.plot{display:block;margin:8px 0 14px;max-width:100%;height:auto}
details{margin:6px 0}summary{cursor:pointer}
ul.tree,ul.tree ul{list-style:none;padding-left:18px;margin:2px 0}ul.tree{padding-left:0}
ul.tree li{margin:2px 0}ul.tree li::before{content:"\\2514\\2500 ";color:#98a2b3}
ul.tree>li::before{content:""}
ul.tree a{color:inherit}.mark{color:#1a7f44;font-size:12px;border:1px solid #1a7f44;
border-radius:3px;padding:0 4px;margin-left:6px;white-space:nowrap}
"""


def _diff_html(diff: str) -> str:
    lines = []
    for line in diff.rstrip("\n").splitlines():
        cls = ("file" if line.startswith(("+++", "---", "diff ")) else
               "add" if line.startswith("+") else "del" if line.startswith("-") else
               "hunk" if line.startswith("@@") else "")
        lines.append(f'<span class="{cls}">{escape(line) or " "}</span>')
    return f'<pre class="diff">{"".join(lines)}</pre>'


def _evidence(verdict: Verdict) -> list[str]:
    rows = []
    for b in verdict.benchmarks:
        for s in series_of(b):
            mb, mc = median(s.baseline), median(s.candidate)
            rows.append(
                f"<tr><td>{escape(s.name)}</td><td>{escape(s.metric)}</td>"
                f"<td>{escape(fmt_sample(s.metric, mb)) if mb is not None else '–'}</td>"
                f"<td>{escape(fmt_sample(s.metric, mc)) if mc is not None else '–'}</td>"
                f"<td>{escape(fmt_speedup(s.ratio) if s.ratio else s.verdict)}</td>"
                f"<td>{f'{s.p_value:.2g}' if s.p_value is not None else '–'}</td>"
                f"<td>{len(s.baseline)}</td><td>{escape(s.verdict)}</td></tr>")
    out = ["<table><tr><th>measurement</th><th>metric</th><th>baseline median</th>"
           "<th>candidate median</th><th>change</th><th>p (paired)</th><th>runs each</th>"
           "<th>verdict</th></tr>", *rows, "</table>"]
    for s in (s for b in verdict.benchmarks for s in series_of(b)):
        note = single_run_note(s)
        out.append(f"<p>{escape(note)}</p>" if note is not None else bench_svg(s))
    return out


def _candidate(view: RunView, cand: CandidateView) -> list[str]:
    v = cand.verdict
    out = [f'<section id="c{cand.n}"><h2>Candidate {cand.n}: {escape(cand.title)} '
           f'<span class="{escape(cand.status)}">— {escape(outcome_cell(cand))}</span></h2>']
    if cand.rationale.strip():
        out.append("<h3>Why</h3><blockquote>"
                   + "<br>".join(escape(x) for x in cand.rationale.strip().splitlines())
                   + "</blockquote>")
    if v is not None and v.benchmarks:
        out.append("<h3>How we know it is faster</h3>")
        out += _evidence(v)
    out.append(f"<h3>Still correct</h3><p>Tests: {escape(tests_sentence(v))}.</p>")
    if equivalence_sentence(v):
        out.append(f"<p>Behaviour: {escape(equivalence_sentence(v))}.</p>")
    if cand.reasons:
        out.append("<ul>" + "".join(f"<li>{escape(r)}</li>" for r in cand.reasons) + "</ul>")
    judged = f"; judged in {v.timings.get('total', 0):.1f} s" if v else ""
    commit = (f"Commit <code>{cand.commit[:10]}</code> on <code>{escape(view.branch)}</code>"
              if cand.on_branch and cand.commit else "Not on the branch")
    out.append(f"<h3>Cost and provenance</h3><p>{escape(usage_sentence(cand))}{judged}. "
               f"{commit}; ref <code>{escape(cand.ref or 'none')}</code>.</p>")
    if cand.review:
        out.append(f"<p>Review: <b>{escape(cand.review.decision)}</b> by "
                   f"{escape(cand.review.reviewer)} {escape(cand.review.note)}</p>")
    if cand.diff:
        out.append("<h3>What changed</h3>" + _diff_html(cand.diff))
    out.append("</section>")
    return out


def _hotspots(profile: ProfileRun | None) -> list[str]:
    rows = hotspot_rows(profile)
    if not rows:
        return []
    head = "".join(f"<th>{escape(c)}</th>" for c in COLUMNS)
    cells = ["<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r.cells()) + "</tr>"
             for r in rows]
    return ["<h2>Where the time goes</h2><p>The baseline's profile: what candidates were "
            "aimed at.</p>", f"<table><tr>{head}</tr>", *cells, "</table>",
            *(f"<p>{escape(n)}</p>" for n in notes(profile))]


def _tree_item(view: RunView, node: TreeNode) -> str:
    label = escape(tree_label(view, node))
    if node.n != BASELINE:
        label = f'<a href="#c{node.n}">{label}</a>'
    mark = (f'<span class="mark">{escape(ON_BRANCH)}</span>'
            if node.on_branch and node.n != BASELINE else "")
    kids = "".join(_tree_item(view, child) for child in node.children)
    # The status colours the node's own line only, never the nodes under it.
    return (f'<li><span class="{escape(node.status)}">{label}</span>{mark}'
            + (f"<ul>{kids}</ul>" if kids else "") + "</li>")


def _tree(view: RunView) -> list[str]:
    """The tree of candidates as nested lists: each candidate under the one it was built on."""
    if not view.candidates:
        return []
    branch = f"<code>{escape(view.branch)}</code>"
    return ["<h2>Tree of candidates</h2>", f"<p>{tree_legend(branch)}</p>",
            f'<ul class="tree">{_tree_item(view, view.tree)}</ul>']


def _models(view: RunView) -> list[str]:
    """The per-model table of a run that asked several models; nothing for one."""
    if len(view.models) < 2:
        return []
    head = "".join(f"<th>{escape(c)}</th>" for c in MODEL_COLUMNS)
    cells = ["<tr>" + "".join(f"<td>{escape(c)}</td>" for c in model_cells(f)) + "</tr>"
             for f in view.models]
    return ["<h2>Models</h2>", f"<table><tr>{head}</tr>", *cells, "</table>"]


def render_html(view: RunView, profile: ProfileRun | None = None) -> str:
    """The report; `profile`: the baseline's hotspots, shown after the candidates' table."""
    kept = view.on_branch
    kpis = [("candidates", str(len(view.candidates))), ("on the branch", str(len(kept))),
            ("best speedup", f"{view.best_speedup:.2f}x" if view.best_speedup else "–"),
            ("cost", fmt_cost(view.cost_usd, view.cost_known)), ("tokens", f"{view.tokens:,}"),
            ("wall time", f"{view.wall_s:.1f} s")]
    rows = []
    for c in view.candidates:
        v = c.verdict
        tests = tests_cell(c)
        link = f'<a href="#c{c.n}">{escape(c.title)}</a>' if c.on_branch else escape(c.title)
        rows.append(f'<tr><td>{c.n}</td><td class="{escape(c.status)}">{escape(c.status)}</td>'
                    f"<td>{link}</td><td>{escape(speed_cell(c))}</td><td>{tests}</td>"
                    f"<td>{escape(', '.join(v.patch.files) if v else '')}</td>"
                    f"<td>{escape('' if c.on_branch else first_reason(c))}</td>"
                    f"<td>{escape(c.review.decision if c.review else '')}</td></tr>")
    body = [
        f"<h1>{escape(headline(view))}</h1>",
        f'<p class="meta">Run <code>{escape(view.run_id)}</code> on <code>{escape(view.repo)}'
        f"</code> from <code>{view.base_commit[:10]}</code> to branch <code>"
        f"{escape(view.branch)}</code>; model <code>{escape(view.model)}</code>, "
        f"{escape(view.sandbox)} sandbox; status {escape(view.status)}"
        f"{' — ' + escape(view.stop_reason) if view.stop_reason else ''}.<br>"
        f"Goal: {escape(view.goal)}</p>",
        '<div class="kpis">' + "".join(f'<div class="kpi"><b>{escape(v)}</b>{escape(k)}</div>'
                                       for k, v in kpis) + "</div>",
        "<table><tr><th>#</th><th>status</th><th>change</th><th>speed</th>"
        "<th>tests p/f/s</th><th>files</th><th>why not on the branch</th><th>review</th></tr>",
        *rows, "</table>",
        *_tree(view),
        *_models(view),
        *_hotspots(profile),
    ]
    for cand in kept:
        body += _candidate(view, cand)
    others = [c for c in view.candidates if not c.on_branch]
    if others:
        body.append("<h2>Not on the branch</h2>")
        for c in others:
            body.append(f"<details><summary>Candidate {c.n}: {escape(c.title)} — "
                        f"{escape(c.status)}: {escape(first_reason(c))}</summary>")
            body += _candidate(view, c)
            body.append("</details>")
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(headline(view))}</title><style>{CSS}</style></head>"
            "<body><main>\n" + "\n".join(body) + "\n</main></body></html>\n")
