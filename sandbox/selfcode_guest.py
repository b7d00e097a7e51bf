"""What a measured process sees of its own start: the same under valgrind and without it.

Standard library only, like the harness. A candidate that can tell valgrind's count from the time
runs, the tests, the equivalence runner or the profiler can do less work only where it is
counted (tests/hostile/hidden-work-attack-fast-only-under-valgrind.toml). So every benchmark
run, counted by valgrind or timed, starts with what a valgrind run's guest sees, wherever the
harness decides it:

- RLIMIT_NOFILE: valgrind runs get 1024 (soft and hard), and valgrind keeps the top 12 fds for
  itself, so its guest's getrlimit() says (1012, 1012); a timed run gets exactly (1012, 1012)
  from the kernel. Dup'ing onto fds >= 1012 fails with EBADF in both.
- open fds: 0-2 and 1012-1018 and 1020. Valgrind holds 1012-1018 in its guest's view and logs
  to 1020; in a timed run /dev/null fills those numbers, so /proc/self/fd lists the same ones
  and FDSize in /proc/self/status is 1024 in both.
- files: valgrind's gdbserver FIFOs go to a judge directory the guest cannot list, not /tmp.
  (The gdbserver stays on: a forked child logs its gdbserver lines as it starts, which is how
  the harness knows of a child killed before valgrind could count it.)
- environment: valgrind.bin is run directly, not Debian's /usr/bin/valgrind shell wrapper, which
  adds LD_LIBRARY_PATH, GLIBCXX_FORCE_NEW, GLIBCPP_FORCE_NEW and PWD and reorders the rest; what
  valgrind itself adds, LD_PRELOAD=vgpreload_core (a library with no effect outside valgrind),
  is given to a timed run as well, last, as valgrind appends it.

The tests, the equivalence runner and the profiler (valgrind=None) start as before: with the
container's limits, no extra fds, no LD_PRELOAD. They check behaviour, so they must look like
ordinary use, not like the judge's meters: whatever marks every judged process (an fd open at
1018, a limit of 1012) lets a patch be correct only where it is judged
(tests/hostile/forged-report-attack-correct-only-under-the-equivalence-runner.toml). So a patch
can still tell a benchmark run from a test run, but not a counted one from a timed one, and a
benchmark's output is compared with the baseline's in both.

What the harness cannot hide, so a determined candidate can still tell valgrind (the instruction
count is therefore always confirmed in CPU time before a win counts, gate/measure.py):
/proc/*/maps (cachegrind-amd64-linux mapped, no [heap] or [vdso]), /proc/*/auxv (no
AT_SYSINFO_EHDR, AT_HWCAP2, AT_MINSIGSTKSZ, AT_RSEQ_*), /proc/*/status Name and /proc/*/comm
("cachegrind-amd6"), SigCgt (valgrind catches every signal), /proc/*/limits (the kernel's 1024,
not the 1012 getrlimit() reports), what fds 1012-1020 point at and that writes to them fail with
EBADF, and timing (valgrind is ~50x slower).
"""

from __future__ import annotations

import glob
import os
import resource
from collections.abc import Callable

VALGRIND_NOFILE = 1024
GUEST_NOFILE = VALGRIND_NOFILE - 12
"""What getrlimit(RLIMIT_NOFILE) returns inside valgrind, soft and hard: valgrind keeps 12."""
JUDGE_FD = 1020
"""Valgrind's log: inside the range valgrind reserves (EBADF to its guest)."""
VALGRIND_FDS = range(GUEST_NOFILE, GUEST_NOFILE + 7)
"""The fds valgrind holds open in its guest's view: its client executable, the /proc/self/cmdline
and auxv it fakes, a dup of its log, a pipe of its own and its gdbserver's FIFO."""
VALGRIND = "/usr/bin/valgrind.bin" if os.access("/usr/bin/valgrind.bin", os.X_OK) else "valgrind"
VALGRIND_ARGS = ["--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                 "--trace-children=yes", "-v", f"--log-fd={JUDGE_FD}"]
_PRELOADS = ("/usr/libexec/valgrind/vgpreload_core-amd64-linux.so",
             "/usr/lib/x86_64-linux-gnu/valgrind/vgpreload_core-amd64-linux.so",
             "/usr/lib/valgrind/vgpreload_core-amd64-linux.so")


def _preload() -> str | None:
    """The library valgrind preloads into its guest, if this machine has valgrind."""
    found = [p for p in _PRELOADS if os.path.isfile(p)]
    found += sorted(glob.glob("/usr/libexec/valgrind/vgpreload_core-*-linux.so"))
    return found[0] if found else None


PRELOAD = _preload()


def valgrind_argv(judge_dir: str, argv: list[str]) -> list[str]:
    """valgrind running `argv`, its gdbserver's FIFOs in a directory the guest cannot list
    (write and search only); what a killed process left there is removed first."""
    folder = os.path.join(judge_dir, "vgdb")
    os.makedirs(folder, exist_ok=True)
    os.chmod(folder, 0o733)
    for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))
    return [VALGRIND, *VALGRIND_ARGS, f"--vgdb-prefix={folder}/v", *argv]


def env_for(env: dict[str, str], valgrind: bool | None) -> dict[str, str]:
    """`env` as a benchmark run must get it so that it sees what a valgrind guest sees."""
    if valgrind is not False or PRELOAD is None or "LD_PRELOAD" in env:
        return env
    return {**env, "LD_PRELOAD": PRELOAD}


def fillers(pass_fds: dict[int, int], valgrind: bool | None) -> dict[int, int]:
    """`pass_fds` with /dev/null at every number a valgrind guest sees open that it lacks."""
    if valgrind is None:
        return pass_fds
    wanted = [JUDGE_FD] if valgrind else [*VALGRIND_FDS, JUDGE_FD]
    out = dict(pass_fds)
    for number in wanted:
        if number not in out:
            out[number] = os.open(os.devnull, os.O_RDWR)
    return out


def limits(valgrind: bool | None) -> Callable[[], None] | None:
    """A benchmark run's pre-exec step: the descriptor limit its guest is to see."""
    if valgrind is None:
        return None
    limit = VALGRIND_NOFILE if valgrind else GUEST_NOFILE

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    return apply
