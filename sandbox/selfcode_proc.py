"""Process control for selfcode's harness: the judge and the judged, kept apart.

Standard library only, like the harness. In the docker sandbox the harness runs as root with
nothing but SETUID, SETGID and KILL, and starts every candidate process demoted to the candidate
uid (setgroups([]), setgid, setuid in the child before exec). Candidate processes then cannot
signal or ptrace the harness, nor read its /proc fds or environment, and every process of that
uid is a candidate process: the harness finds them all in /proc and kills them all.

Each measured process starts from the same state as its twin on the other side: fresh (emptied)
scratch directories, no SysV IPC object and no process of the candidate uid left from before.
Its CPU time is that of every process it started: the container's cgroup counter (v1
cpuacct.usage or v2 cpu.stat) read around it, with nothing else running, or, without a cgroup of
its own (the local sandbox), the rusage of every child reaped, orphans included (the harness is
their subreaper). The harness blocks in select() while it waits; it does not poll.

Without a candidate uid (the local sandbox, which runs as the user) nothing is demoted and the
harness can only find and kill its own descendants.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import select
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import selfcode_files as files
import selfcode_guest as guest
from selfcode_memory import MemoryMeter, usage_fd

TAIL_BYTES = 4000
STREAM_CAP = 64 * 1024 * 1024
_PR_SET_CHILD_SUBREAPER = 36
_PF_EXITING = 0x4


class HarnessError(Exception):
    """The harness cannot do its job here (wrong uid, no cgroup counter, ...)."""


class Setup(NamedTuple):
    judge_dir: str
    user: tuple[int, int] | None
    """(uid, gid) every candidate process runs as; None: no demotion (the local sandbox)."""
    fresh: tuple[str, ...] = ()
    """Directories emptied before every measured process (/tmp, $HOME, /dev/shm...)."""
    cpu_meter: str = "rusage"


class Measured(NamedTuple):
    # NamedTuples, not dataclasses: importing dataclasses (and inspect) costs every harness
    # start a tenth of its time.
    exit_code: int
    pid: int = 0
    timed_out: bool = False
    wall: float = 0.0
    cpu: float = 0.0
    max_rss_kb: int = 0
    stdout: bytes = b""
    stderr_tail: str = ""
    leftovers: int = 0
    streams: dict[int, bytes] = {}  # noqa: RUF012 - never mutated
    problem: str | None = None
    """Why the run cannot count at all (the fresh state could not be made...)."""


class CpuMeter:
    """Seconds of CPU used by every process: the cgroup counter, or reaped children's rusage."""

    _V1 = ("/sys/fs/cgroup/cpuacct/cpuacct.usage", "/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage")
    _V2 = "/sys/fs/cgroup/cpu.stat"

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._read: Callable[[], float] = _children_cpu
        if kind == "cgroup":
            self._read = self._find_cgroup()

    def _find_cgroup(self) -> Callable[[], float]:
        for path in self._V1:
            if os.access(path, os.R_OK):
                return lambda: int(_read_text(path)) / 1e9
        if os.access(self._V2, os.R_OK):
            return lambda: _usage_usec(_read_text(self._V2)) / 1e6
        raise HarnessError("no readable cgroup CPU counter (cpuacct.usage or cpu.stat)")

    def read(self) -> float:
        return self._read()


def _read_text(path: str) -> str:
    with open(path, encoding="ascii") as fh:
        return fh.read()


def _usage_usec(text: str) -> int:
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value)
    raise HarnessError("cpu.stat has no usage_usec")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _procs() -> list[tuple[int, bool, list[int], int]]:
    """(pid, runs, uids, ppid) of every process in /proc; `runs`: any of its threads may still
    run code (a zombie leader whose other threads go on still runs)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            text = _read_text(f"/proc/{name}/status")
        except (OSError, UnicodeDecodeError):
            continue  # gone meanwhile
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        uids = [int(u) for u in fields.get("Uid", "").split()]
        out.append((int(name), _runs(name), uids, int(fields.get("PPid", "0"))))
    return out


def _runs(pid: str) -> bool:
    """Whether a thread of `pid` is neither dead nor exiting (PF_EXITING: it runs no more code,
    only the kernel's teardown, which may outlast the closing of its files)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tids:
        try:
            stat = _read_text(f"/proc/{pid}/task/{tid}/stat").rsplit(")", 1)[1].split()
        except (OSError, UnicodeDecodeError, IndexError):
            continue
        if stat[0] not in "ZXx" and not int(stat[6]) & _PF_EXITING:
            return True
    return False


class Guard:
    """The judge's side: demotion, fresh state, leftovers, waiting, reaping."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.private = os.path.join(setup.judge_dir, "private")
        if setup.user is not None and os.getuid() != 0:
            raise HarnessError("the harness must run as root to demote candidate processes")
        for path, mode in ((setup.judge_dir, 0o755), (self.private, 0o700),
                           (os.path.join(setup.judge_dir, "trees"), 0o755),
                           (os.path.join(setup.judge_dir, "runs"), 0o755)):
            os.makedirs(path, mode=mode, exist_ok=True)
            os.chmod(path, mode)
        with contextlib.suppress(OSError, AttributeError):
            # Orphans (a double fork's worker) become our children: we see them exit.
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        self._wake_r, wake_w = os.pipe()
        for fd in (self._wake_r, wake_w):
            os.set_blocking(fd, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        self.meter = CpuMeter(setup.cpu_meter)
        self.memory = usage_fd(self.meter.kind)
        self._groups: set[int] = set()
        self.kill_all()

    @property
    def demote(self) -> dict[str, Any]:
        """Popen arguments that start a child as the candidate uid, with no extra groups."""
        if self.setup.user is None:
            return {}
        uid, gid = self.setup.user
        return {"user": uid, "group": gid, "extra_groups": []}

    def as_candidate(self, work: Callable[[], None]) -> str | None:
        """Run `work` as the candidate uid (in a forked child); the error, or None."""
        if self.setup.user is None:
            try:
                work()
            except OSError as exc:
                return str(exc)
            return None
        uid, gid = self.setup.user
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                os.close(read_end)
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
                work()
                code = 0
            except BaseException as exc:  # reported to the parent, never raised
                os.write(write_end, f"{type(exc).__name__}: {exc}"[:500].encode())
            finally:
                os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as fh:
            message = fh.read().decode("utf-8", "replace")
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) == 0:
            return None
        return message or f"exited with status {status} as the candidate uid"

    # --- candidate processes ------------------------------------------------------------------

    def live(self) -> list[int]:
        """Candidate processes that may still run code (zombies and exiting ones run none)."""
        me = os.getpid()
        procs = _procs() if os.path.isdir("/proc") else []
        if self.setup.user is not None:
            uid = self.setup.user[0]
            return [p for p, runs, uids, _ in procs if runs and uid in uids]
        children: dict[int, list[int]] = {}
        running = set()
        for pid, runs, _, ppid in procs:
            children.setdefault(ppid, []).append(pid)
            if runs:
                running.add(pid)
        found, todo = [], list(children.get(me, []))
        while todo:
            pid = todo.pop()
            todo.extend(children.get(pid, []))
            if pid in running:
                found.append(pid)
        return found

    def track(self, pid: int, on: bool) -> None:
        """Remember (or forget) a measured process's group, killed with the rest."""
        (self._groups.add if on else self._groups.discard)(pid)

    def kill_all(self, reap: bool = True) -> None:
        """Kill every candidate process; blocks until none runs. `reap`: reap what was ours."""
        if self.setup.user is not None:
            # kill(-1) as the candidate uid: atomic against forks, reaches exactly that uid.
            self.as_candidate(lambda: os.kill(-1, signal.SIGKILL))
        for group in self._groups:
            with contextlib.suppress(OSError):
                os.killpg(group, signal.SIGKILL)
        for _ in range(2000):
            alive = self.live()
            if not alive:
                break
            for pid in alive:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.001)
        if reap:
            self.reap()

    def reap(self) -> int:
        """Reap every exited child (orphans included); the largest peak RSS among them, KiB."""
        peak = 0
        while True:
            try:
                pid, _, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return peak
            if pid == 0:
                return peak
            peak = max(peak, usage.ru_maxrss)

    def fresh_state(self) -> str | None:
        """Empty the scratch directories and drop the candidate's IPC objects; the problem."""
        def wipe() -> None:
            for path in self.setup.fresh:
                if os.path.isdir(path):
                    files.clear_dir(path)
            if self.setup.user is not None:
                files.remove_ipc(files.ipc_objects(self.setup.user[0]))

        problem = self.as_candidate(wipe)
        if problem is None and not all(files.is_empty(p) for p in self.setup.fresh):
            problem = "not empty afterwards"
        return f"could not restore a fresh {', '.join(self.setup.fresh)}: {problem}" if problem \
            else None

    # --- one measured process ------------------------------------------------------------------

    def wait(self, pid: int, deadline: float, drain: list[int]
             ) -> tuple[int, Any, bool, dict[int, bytearray]]:
        """Block until `pid` exits or the deadline passes, reading `drain` meanwhile."""
        bufs = {fd: bytearray() for fd in drain}
        open_fds = list(drain)
        timed_out = False
        while True:
            got, status, usage = os.wait4(pid, os.WNOHANG)
            if got:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                self.kill_all(reap=False)  # `pid` stays ours to wait for
                _, status, usage = os.wait4(pid, 0)
                break
            ready, _, _ = select.select([self._wake_r, *open_fds], [], [], remaining)
            for fd in ready:
                if fd == self._wake_r:
                    _drain_nonblocking(fd, None)
                elif not _read_some(fd, bufs[fd]):
                    open_fds.remove(fd)
        return status, usage, timed_out, bufs

    def close(self) -> None:
        self.kill_all()
        signal.set_wakeup_fd(-1)


def _read_some(fd: int, buf: bytearray) -> bool:
    chunk = os.read(fd, 65536)
    if len(buf) < STREAM_CAP:
        buf += chunk
    return bool(chunk)


def _drain_nonblocking(fd: int, buf: bytearray | None) -> None:
    os.set_blocking(fd, False)
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            if buf is not None and len(buf) < STREAM_CAP:
                buf += chunk


def run_measured(guard: Guard, argv: list[str], cwd: str, env: dict[str, str],
                 timeout: float, *, pass_fds: dict[int, int] | None = None,
                 drain: list[int] | None = None, valgrind: bool | None = None) -> Measured:
    """Run one fresh candidate process from a fresh state, and measure all it started.

    `pass_fds` maps fd numbers in the child to fds of ours (they are closed here once the
    child has them); `drain` are pipes read while it runs; `valgrind`: a benchmark run, counted
    (True) or timed (False), which starts as valgrind's guest sees its start (selfcode_guest.py).
    """
    problem = guard.fresh_state()
    if problem:
        return Measured(exit_code=-1, problem=problem)
    pass_fds, drain = guest.fillers(pass_fds or {}, valgrind), drain or []
    with tempfile.TemporaryFile(dir=guard.private) as out, \
            tempfile.TemporaryFile(dir=guard.private) as err:
        for target, source in pass_fds.items():
            if source != target:
                os.dup2(source, target)
                os.close(source)
        guard.reap()
        memory = MemoryMeter(guard.memory)
        before = guard.meter.read()
        start = time.perf_counter()
        try:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=guest.env_for(env, valgrind), stdin=subprocess.DEVNULL,
                stdout=out, stderr=err, start_new_session=True, pass_fds=tuple(pass_fds),
                preexec_fn=guest.limits(valgrind), **guard.demote)
        except OSError as exc:
            return Measured(exit_code=127, stderr_tail=f"could not start {argv[0]}: {exc}")
        finally:
            for target in pass_fds:
                os.close(target)
        guard.track(proc.pid, True)
        memory.start()
        status, usage, timed_out, bufs = guard.wait(proc.pid, time.monotonic() + timeout, drain)
        wall = time.perf_counter() - start
        tree_kb = memory.stop()  # the whole tree's peak, or None: the largest ru_maxrss
        proc.returncode = os.waitstatus_to_exitcode(status)
        after = guard.meter.read() if guard.meter.kind == "cgroup" else None
        # Whatever still runs now outlived the measured process: it is killed, and counted.
        leftovers = len(guard.live())
        guard.kill_all(reap=False)
        peak = max(usage.ru_maxrss, guard.reap())
        cpu = (guard.meter.read() if after is None else after) - before
        guard.track(proc.pid, False)
        for fd in drain:
            _drain_nonblocking(fd, bufs[fd])
        return Measured(
            exit_code=proc.returncode, pid=proc.pid, timed_out=timed_out, wall=wall, cpu=cpu,
            max_rss_kb=tree_kb or peak, stdout=_read_all(out), stderr_tail=_tail(err),
            leftovers=leftovers, streams={fd: bytes(buf) for fd, buf in bufs.items()})


def _read_all(fh: Any) -> bytes:
    fh.seek(0)
    data: bytes = fh.read()
    return data


def _tail(fh: Any) -> str:
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    fh.seek(max(0, size - TAIL_BYTES))
    data: bytes = fh.read()
    return data.decode("utf-8", "replace")
