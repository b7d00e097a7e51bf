"""The history of a repository's runs, in one SQLite database per repository.

- `db.py`: `History`, the connection (WAL, every write committed before it returns) and
  every read and write of runs, candidates, exchanges, events and reviews.
- `rows.py`: the typed rows `History` takes and returns (`RunRow`, `CandidateRow`,
  `Exchange` and `ExchangeRow`, `EventRow`, `ReviewRow`, `CandidateUsage`).
- `migrations.py`: the schema, as named append-only migrations, applied on open.
- `texts.py`: prompt text kept once per distinct piece (m003); exchanges refer to pieces.
- `views.py`: a run and its candidates as reviewers see them (`RunView`), built from the
  history and git for `runs`, `show`, `review` and `report`. Import it from there: it
  depends on git, which depends on this package.
"""

from selfcode.history.db import HISTORY_FILE, History, new_run_id
from selfcode.history.rows import (
    CandidateRow,
    CandidateUsage,
    EventRow,
    Exchange,
    ExchangeRow,
    ReviewRow,
    RunRow,
)

__all__ = [
    "HISTORY_FILE",
    "CandidateRow",
    "CandidateUsage",
    "EventRow",
    "Exchange",
    "ExchangeRow",
    "History",
    "ReviewRow",
    "RunRow",
    "new_run_id",
]
