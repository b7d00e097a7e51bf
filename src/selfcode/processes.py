"""Host-side facts about processes: is a pid alive, and is it still the process we recorded.

Locks, local sandboxes and Docker containers all record the pid (and the kernel's start time)
of the selfcode run that owns them, so a later run can tell a live owner from a dead one whose
pid was reused. One copy of that logic, here.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True while a process with this pid exists (owned by anyone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError as exc:
        return exc.errno != errno.ESRCH
    return True


def process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (Linux, in clock ticks since boot), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def owner_alive(pid: int, recorded_start: str | None) -> bool:
    """The recorded owner still runs: its pid is alive and was not reused by another process."""
    if not pid_alive(pid):
        return False
    current = process_start(pid)
    return not (recorded_start and current and recorded_start != current)
