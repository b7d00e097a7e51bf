"""What `selfcode demo` shows: which repository it improves, and (with --self) each verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape

from selfcode.cli.common import err


def demo_repo(self_: bool, backend: str) -> tuple[Path, Path, dict[str, Any]]:
    """The demo's repository, its replay file and its settings; says what is about to happen."""
    from selfcode.run.workflows import prepare_demo_repo

    if not self_:
        repo, replay = prepare_demo_repo()
        err.print(f"[bold]selfcode demo[/]: improving a copy of the example repository at "
                  f"{escape(str(repo))}\nThe model's replies are [bold]replayed[/] from "
                  f"{escape(replay.name)} (no API calls); sandbox: [bold]{escape(backend)}[/].",
                  highlight=False)
        return repo, replay, {"agent__iterations": 3}
    from selfcode.resources import self_source
    from selfcode.run.selfdemo import DEMO_BENCHMARK, DEMO_TESTS, prepare_self_demo_repo

    repo, replay = prepare_self_demo_repo(self_source())
    err.print(f"[bold]selfcode demo --self[/]: improving a copy of selfcode's own source at "
              f"{escape(str(repo))}, with judge edits allowed (--allow-judge-edits).\n"
              f"Two replayed candidates (no API calls) speed up the judge's protected-path "
              f"matching; the first also switches off one of its checks. Each is judged by the "
              f"ordinary gate ({escape(', '.join(DEMO_TESTS))}; {escape(DEMO_BENCHMARK)}), then "
              f"promoted only if its OWN judge reproduces every verdict of the canary corpus "
              f"(tests/canary). Sandbox: [bold]{escape(backend)}[/].", highlight=False)
    return repo, replay, {"agent__iterations": 2, "gate__allow_judge_edits": True}


def print_candidates(repo: Path, run_id: str) -> None:
    """Each candidate's verdict and its canary, as the history recorded them."""
    from selfcode.git.store import GitStore
    from selfcode.history.db import HISTORY_FILE, History

    with History(GitStore(repo).state_dir() / HISTORY_FILE) as history:
        for row in history.candidates(run_id):
            verdict = row.verdict or {}
            canary = verdict.get("canary") or {}
            cases = canary.get("cases") or []
            passed = sum(1 for c in cases if c.get("ok"))
            said = (verdict.get("reasons") or ["no reason recorded"])[0]
            line = f"candidate {row.n}: {verdict.get('status', row.status)}"
            line += f"; canary {passed} of {len(cases)} right" if cases else ""
            line += "" if verdict.get("accepted") else f"; {said}"
            err.print(line, highlight=False, markup=False)
