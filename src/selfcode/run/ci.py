"""`selfcode improve --ci`: one unattended run that leaves files a CI job can act on.

Writes `report.md` (the pull-request body) and `summary.json` into the output directory,
whatever happens, and answers with an exit code: 0 improvements found, 3 none found,
2 error (the exception is re-raised as a SelfcodeError so the CLI prints one sentence).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from selfcode.config import Settings
from selfcode.errors import SelfcodeError
from selfcode.git.store import GitStore
from selfcode.history.db import HISTORY_FILE, History
from selfcode.history.views import RunView, load_run
from selfcode.prompt.profile import recorded_profile
from selfcode.report.markdown import headline, render_markdown
from selfcode.run.events import Observer
from selfcode.run.workflows import improve

EXIT_IMPROVED, EXIT_NONE, EXIT_ERROR = 0, 3, 2
REPORT_FILE, SUMMARY_FILE = "report.md", "summary.json"


def _write(out_dir: Path, summary: dict[str, Any], report: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REPORT_FILE).write_text(report, "utf-8")
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", "utf-8")


def run_ci(path: Path, settings: Settings, observer: Observer, out_dir: Path,
           resume: str | None = None) -> tuple[int, dict[str, Any]]:
    """Run once; write the report and summary; return (exit code, summary)."""
    try:
        summary = improve(path, settings, observer, resume=resume)
    except Exception as exc:
        if isinstance(exc, SelfcodeError):
            message = str(exc)
        else:  # a bug: still one sentence and exit 2, so the nightly job fails visibly
            message = f"selfcode failed unexpectedly ({type(exc).__name__}: {exc})."
        _write(out_dir, {"status": "error", "error": message, "exit_code": EXIT_ERROR},
               f"## selfcode failed\n\n{message}\n")
        if isinstance(exc, SelfcodeError):
            raise
        raise SelfcodeError(message) from exc
    store = GitStore(path)
    try:
        with History(store.state_dir() / HISTORY_FILE) as history:
            view = load_run(history, summary.run_id, store)
            profile = recorded_profile(history, summary.run_id)
    finally:
        store.close()
    code = EXIT_IMPROVED if view.on_branch else EXIT_NONE
    data = summary.model_dump()
    data.update(
        exit_code=code, report=str(out_dir / REPORT_FILE),
        title=_title(view),
        improvements=[{"n": c.n, "title": c.title, "speedup": c.speedup, "commit": c.commit,
                       "ref": c.ref} for c in view.on_branch],
    )
    _write(out_dir, data, render_markdown(view, profile=profile))
    return code, data


def _title(view: RunView) -> str:
    kept = view.on_branch
    if len(kept) == 1:
        return f"selfcode: {kept[0].title}"
    return headline(view)
