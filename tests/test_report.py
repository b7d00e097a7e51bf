"""`selfcode report`: the Markdown pull-request body and the self-contained HTML page,
opened in headless Chromium to check that the plots are really drawn."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfcode.cli.app import app
from selfcode.gate.verdict import BenchVerdict
from selfcode.history.views import CandidateView, RunView
from selfcode.report.plots import Scale, Series, bench_svg, series_of, text_plot

from run_helpers import (
    REPLY_BAD_EVENS,
    REPLY_EVENS,
    REPLY_SQUARES,
    improved_target,
    isolated_run,  # noqa: F401 (an autouse fixture: importing it is using it)
    make_target,
    write_replay,
)

runner = CliRunner()


@pytest.fixture
def run3(tmp_path: Path) -> tuple[Path, str]:
    repo, summary = improved_target(tmp_path, REPLY_SQUARES, REPLY_BAD_EVENS, REPLY_EVENS)
    return repo, summary["run_id"]


def report(repo: Path, run: str, fmt: str) -> str:
    result = runner.invoke(app, ["report", run, str(repo), "--format", fmt])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_markdown_report_answers_what_why_how_and_cost(run3):
    repo, run = run3
    md = report(repo, run, "md")
    assert md.startswith("## selfcode: 2 proven improvements, best 1.82x faster\n")
    assert "| 1 | accepted | squares() adds i*i one at a time" in md
    assert "| 2 | rejected | Count evens as n // 2, which is simpler | – | 1/1/0 |" in md
    assert "> squares() adds i*i one at a time; the closed form n(n-1)(2n-1)/6" in md
    assert "| work | cpu_time | 199 ms | 110 ms | 1.82x faster | 0.0039 | 8 + 8 |" in md
    assert "baseline  |" in md and "candidate |" in md and "┃" in md  # the text plots
    assert "**Tests**: 2 passed, 0 failed, 0 skipped (baseline: 2 passed" in md
    assert "**Cost**: replay, 1 exchange(s), 1,100 tokens, $0; judged" in md  # free, and known
    assert md.count("```diff") == 3  # two accepted, one rejected (folded)
    assert "<details><summary>Candidate 2: Count evens as n // 2" in md
    assert "newly failing: tests/test_fastlib.py::test_evens" in md
    assert f"refs/selfcode/{run}/1" in md


def test_markdown_report_stays_under_a_pull_request_body_limit(run3):
    from selfcode.git.store import GitStore
    from selfcode.history.db import History
    from selfcode.history.views import load_run
    from selfcode.report.markdown import render_markdown

    repo, run = run3
    store = GitStore(repo)
    with History(store.state_dir() / "history.db") as history:
        view = load_run(history, run, store)
    view.candidates[0].diff += "+# padding\n" * 20_000
    text = render_markdown(view, max_chars=30_000)
    assert len(text) <= 30_000 and "diff truncated" in text
    assert text.startswith("## selfcode: 2 proven improvements")


def test_html_report_is_self_contained_with_a_plot_per_measurement(run3):
    repo, run = run3
    html = report(repo, run, "html")
    assert html.startswith("<!doctype html>") and "<script" not in html.lower()
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing is fetched
    svgs = re.findall(r"<svg .*?</svg>", html, flags=re.S)
    assert len(svgs) == 2  # one benchmark for each of the two accepted candidates
    for svg in svgs:
        root = ET.fromstring(svg)
        circles = root.findall(".//{http://www.w3.org/2000/svg}circle")
        assert len(circles) == 16  # every sample of 8 pairs is drawn
    assert "work: 1.82x faster, p = 0.0039 (8 paired runs, cpu_time)" in html
    assert 'class="add">+    return (n - 1) * n * (2 * n - 1) // 6</span>' in html


def test_report_to_a_file_and_bad_format(run3, tmp_path: Path):
    repo, run = run3
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", run, str(repo), "--format", "html", "-o", str(out)])
    assert result.exit_code == 0 and out.read_text().startswith("<!doctype html>")
    bad = runner.invoke(app, ["report", run, str(repo), "--format", "pdf"])
    assert bad.exit_code == 2 and "md or html" in bad.stderr


def test_plots_draw_every_sample_and_choose_a_log_scale_for_wide_ranges():
    bench = BenchVerdict(name="b", metric="instructions", baseline=[1.6e9], candidate=[5.6e7],
                         ratio=0.034, verdict="faster", stage="instructions",
                         confirmation={"ratio": 0.11, "p_value": 0.0156,
                                       "baseline": [0.13] * 6, "candidate": [0.014] * 6})
    series = series_of(bench)
    assert [s.metric for s in series] == ["instructions", "cpu_time"]
    assert Scale(series[0].baseline + series[0].candidate, 0, 100).log
    svg = bench_svg(series[1])
    assert svg.count("<circle") == 12 and "log scale" in svg
    text = text_plot(Series("t", "cpu_time", [0.1, 0.11, 0.12], [0.1, 0.1, 0.1], 0.9, 0.2,
                            "same"))
    assert text.splitlines()[1].startswith("baseline  |")


# -- in a real browser ---------------------------------------------------------------------------


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB rows of an 8-bit, non-interlaced RGB or RGBA PNG (stdlib only)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        prev = line
        rows.append(bytes(v for i, v in enumerate(line) if i % bpp < 3))
    return width, height, rows


def _slate(r: int, g: int, b: int) -> bool:
    """The baseline colour of the plots (#5b6b82, also blended): nothing else on the page."""
    return 0x40 <= r <= 0xA8 and b - r >= 28 and r <= g <= b


def _green(r: int, g: int, b: int) -> bool:
    """The candidate colour of a faster benchmark (#1a8a4a, also blended)."""
    return g - r >= 50 and g - b >= 25


def test_html_report_renders_its_plots_in_headless_chromium(run3, tmp_path: Path):
    chromium = _chromium()
    if chromium is None:
        if os.environ.get("SELFCODE_REQUIRE_CHROMIUM") == "1":
            pytest.fail("chromium is required (SELFCODE_REQUIRE_CHROMIUM=1) but not installed")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    repo, run = run3
    page = tmp_path / "report.html"
    page.write_text(report(repo, run, "html"))
    shot = tmp_path / "report.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", f"--screenshot={shot}",
             "--window-size=1200,1600", page.as_uri()],
            capture_output=True, timeout=120, check=False)
    assert shot.exists() and shot.stat().st_size > 10_000, "no screenshot"
    keep = os.environ.get("SELFCODE_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, Path(keep) / "report.png")
    width, height, rows = decode_png(shot.read_bytes())
    assert (width, height) == (1200, 1600)
    slate = [(x, y) for y, row in enumerate(rows) for x in range(width)
             if _slate(row[3 * x], row[3 * x + 1], row[3 * x + 2])]
    assert len(slate) > 150, f"the baseline samples are not drawn ({len(slate)} pixels)"
    # The plot region: from the first baseline row down to where the candidate row must be.
    top = min(y for _, y in slate)
    first_plot = [x for x, y in slate if y < top + 40]
    green = [(x, y) for y in range(top, min(top + 80, height)) for x in range(width)
             if _green(*rows[y][3 * x:3 * x + 3])]
    assert len(green) > 100, f"the candidate samples are not drawn ({len(green)} pixels)"
    # The candidate is faster, so its samples sit left of the baseline's, on the same axis.
    assert sum(x for x, _ in green) / len(green) < sum(first_plot) / len(first_plot)


def test_a_run_without_improvements_reports_so(tmp_path: Path):
    from run_helpers import NO_EDIT

    repo = make_target(tmp_path / "target")
    replay = write_replay(tmp_path / "r.jsonl", REPLY_BAD_EVENS, NO_EDIT, NO_EDIT, NO_EDIT)
    result = runner.invoke(app, ["improve", str(repo), "--replay", str(replay), "--sandbox",
                                 "local", "--iterations", "2", "--json"])
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)["run_id"]
    md = report(repo, run, "md")
    assert md.startswith("## selfcode: no proven improvement in 2 candidates")
    assert "| 2 | malformed |" in md and "no usable edit: " in md
    html = report(repo, run, "html")
    assert "no proven improvement" in html and "<svg" not in html
    shown = runner.invoke(app, ["show", f"{run}/2", str(repo)])
    assert shown.exit_code == 0 and "malformed" in shown.stdout


def test_a_model_without_a_price_reads_unpriced_everywhere_never_zero(tmp_path: Path):
    """A reply from a model with no price costs an unknown amount: every place that shows the
    cost says so (the run's summary, `runs`, `show`, both reports), while a replay's known $0
    (test above) still reads $0."""
    repo = make_target(tmp_path / "target")
    replay = tmp_path / "r.jsonl"
    replay.write_text(json.dumps({"reply": REPLY_SQUARES, "prompt_tokens": 1000,
                                  "completion_tokens": 100, "priced": False,
                                  "model": "local-llama"}) + "\n")
    result = runner.invoke(app, ["improve", str(repo), "--replay", str(replay), "--sandbox",
                                 "local", "--iterations", "1"])
    assert result.exit_code == 0, result.output
    summary_line = " ".join(result.stderr.split())
    assert "1100 tokens, unpriced," in summary_line
    run = json.loads(runner.invoke(app, ["runs", str(repo), "--json"]).stdout)[0]
    assert run["cost_known"] is False
    outputs = {
        "runs": runner.invoke(app, ["runs", str(repo)]).stdout,
        "show": runner.invoke(app, ["show", run["run_id"], str(repo)]).stdout,
        "show 1": runner.invoke(app, ["show", f"{run['run_id']}/1", str(repo)]).stdout,
        "md": report(repo, run["run_id"], "md"),
        "html": report(repo, run["run_id"], "html"),
    }
    for where, text in outputs.items():
        assert "unpriced" in text, where
        assert "$0" not in text, where
    assert "1,100 tokens, unpriced" in outputs["md"]
    # A clone with only the fetched refs and notes knows it too.
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "fetch", "-q", "origin",
                    "+refs/selfcode/*:refs/selfcode/*",
                    "+refs/notes/selfcode:refs/notes/selfcode"], check=True)
    copied = runner.invoke(app, ["show", f"{run['run_id']}/1", str(clone)]).stdout
    assert "unpriced" in copied and "$0" not in copied
    message = subprocess.run(["git", "-C", str(repo), "log", "-1", "--format=%B",
                              f"selfcode/{run['run_id']}"], capture_output=True, text=True,
                             check=True).stdout
    assert "Model local-llama: 1100 tokens, unpriced." in message


def _view_with_reasons(*reasons: list[str]) -> RunView:
    view = RunView(run_id="r1", repo="/repo", branch="selfcode/r1", base_commit="0" * 40,
                   goal="faster", model="m", sandbox="docker", status="finished",
                   started_at="2026-01-01T00:00:00")
    view.candidates = [CandidateView(run_id="r1", n=n, status="rejected", title=f"idea {n}",
                                     reasons=why) for n, why in enumerate(reasons, 1)]
    return view


def test_the_html_table_shows_why_each_candidate_was_rejected_escaped():
    from selfcode.report.html import render_html

    hostile = "newly failing: tests/test_x.py::test_<img src=x onerror=alert(1)>"
    html = render_html(_view_with_reasons([hostile, "second reason"], []))
    table = html[html.index("<table>"):html.index("</table>")]
    assert "<th>why not on the branch</th>" in table
    assert ("<td>newly failing: tests/test_x.py::test_&lt;img src=x onerror=alert(1)&gt;</td>"
            in table)
    assert "second reason" not in table  # the first reason only; the section has them all
    assert "<td>no reason recorded</td>" in table
    assert "<img" not in html  # escaped everywhere, the folded sections included
    summaries = re.findall(r"<summary>(.*?)</summary>", html)
    assert summaries[0].endswith("rejected: newly failing: tests/test_x.py::test_&lt;img src=x "
                                 "onerror=alert(1)&gt;")


def test_a_heading_says_what_a_candidate_came_to_never_a_bare_dash():
    from selfcode.report.markdown import outcome_cell, render_markdown

    view = _view_with_reasons(["the judge's report was tampered with or lost"], [],
                              ["x " * 200])
    cands = view.candidates
    assert outcome_cell(cands[0]) == "the judge's report was tampered with or lost"
    assert outcome_cell(cands[1]) == "no reason recorded"
    assert len(outcome_cell(cands[2])) <= 120 and outcome_cell(cands[2]).endswith("…")
    md = render_markdown(view)
    assert "Candidate 2: idea 2 — rejected: no reason recorded</summary>" in md


def test_one_instruction_count_each_is_stated_with_why_it_suffices_not_plotted():
    from selfcode.gate.verdict import Verdict
    from selfcode.report.html import render_html
    from selfcode.report.markdown import render_markdown

    bench = BenchVerdict(name="parse", metric="instructions", baseline=[1.0e9],
                         candidate=[997e6], ratio=0.997, verdict="same", stage="instructions")
    [series] = series_of(bench)
    text = text_plot(series)
    assert text == ("parse: baseline 1.00 G, candidate 997 M instructions (0.3% faster). One "
                    "run each suffices: an instruction count is deterministic, the same on "
                    "every run of the same code and input, so there is no spread to plot.")
    timed = Series("t", "cpu_time", [0.2], [0.1], 0.5, None, "faster")
    assert text_plot(timed) == ("t: baseline 200 ms, candidate 100 ms cpu_time (2.00x faster); "
                                "one run each, too few samples to plot.")

    view = _view_with_reasons([])
    cand = view.candidates[0]
    cand.status, cand.commit = "accepted", "1" * 40  # on the branch: its evidence is shown
    cand.verdict = Verdict(accepted=True, status="accepted", goal="speed", benchmarks=[bench])
    md = render_markdown(view)
    assert "an instruction count is deterministic" in md and "┃" not in md
    html = render_html(view)
    assert "an instruction count is deterministic" in html and "<svg" not in html


@pytest.mark.parametrize(("known", "spend"), [(True, "spent $0.0123, 1100 tokens"),
                                              (False, "spent $0.0123 (some unpriced), 1100 tokens")])
def test_the_live_spend_says_when_the_cost_is_unknown(known: bool, spend: str) -> None:
    import io

    from rich.console import Console

    from selfcode.report.console import ConsoleObserver
    from selfcode.report.units import fmt_cost

    observer = ConsoleObserver(Console(file=io.StringIO()))
    observer.event("spend", fmt_cost(0.0123, known), tokens=1100)
    assert observer.spend == spend
    observer.event("spend", fmt_cost(0.0, False), tokens=1100)
    assert observer.spend == "unpriced, 1100 tokens"
