"""The judge and the judged are separated: real docker sandbox, real harness, real attacks.

Each test loads a small tree whose tests or benchmarks attack the judge from inside, as a
candidate would (forged reports, work hidden from the meters, state carried between runs), and
checks the attack fails the way it must. Hostile *patches* through the whole gate are in
tests/hostile/ (test_hostile_corpus.py).
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterator

import pytest

from selfcode.errors import JudgeReportError
from selfcode.sandbox.docker import DockerSandbox
from selfcode.sandbox.trees import Trees

from repos import JUNIT_REWRITTEN_AT_EXIT, tar_of

pytest_plugins = ["docker_util"]
pytestmark = pytest.mark.docker

PROBE_JUDGE = '''import ctypes, errno, os, signal

import pytest

JUDGE = os.getppid()  # pytest's parent: the harness


def test_runs_as_the_candidate_uid_without_capabilities():
    assert (os.getuid(), os.geteuid(), os.getgid(), os.getgroups()) == (1000, 1000, 1000, [])
    status = open("/proc/self/status").read()
    assert "CapEff:\\t0000000000000000" in status and "NoNewPrivs:\\t1" in status


def test_the_judge_is_root_and_alive():
    assert os.stat(f"/proc/{JUDGE}/status").st_uid == 0
    assert "Uid:\\t0\\t0\\t0\\t0" in open(f"/proc/{JUDGE}/status").read()


def test_cannot_read_or_reopen_the_judges_fds():
    with pytest.raises(PermissionError):
        os.listdir(f"/proc/{JUDGE}/fd")
    for fd in (1, 2):
        with pytest.raises(PermissionError):
            os.open(f"/proc/{JUDGE}/fd/{fd}", os.O_WRONLY)


def test_cannot_read_the_judges_environment_or_memory():
    for name in ("environ", "mem", "maps"):
        with pytest.raises(PermissionError):
            open(f"/proc/{JUDGE}/{name}", "rb").read(1)
    assert open("/proc/self/environ", "rb").read()  # the probe itself works


def test_cannot_signal_or_trace_the_judge():
    for sig in (0, signal.SIGKILL, signal.SIGSTOP, signal.SIGTERM):
        with pytest.raises(PermissionError):
            os.kill(JUDGE, sig)
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.ptrace(16, JUDGE, None, None) == -1  # PTRACE_ATTACH
    assert ctypes.get_errno() == errno.EPERM


def test_no_process_shows_the_nonce_and_the_judges_files_are_closed():
    for pid in filter(str.isdigit, os.listdir("/proc")):
        for name in ("cmdline", "environ"):
            try:
                data = open(f"/proc/{pid}/{name}", "rb").read()
            except OSError:
                continue
            assert b"SELFCODE_REPORT_NONCE" not in data, (pid, name)
    with pytest.raises(PermissionError):
        os.listdir("/judge/private")
    with pytest.raises(PermissionError):
        open("/judge/trees/a/new-file", "w")
'''


@pytest.fixture
def trees(sandbox: DockerSandbox) -> Iterator[Trees]:
    yield Trees(sandbox, timeout=60)


def _bench(trees: Trees, code: str, metric: str = "cpu_time", pairs: int = 1):
    trees.load_baseline(tar_of({"benchmarks/bench_x.py": code}))
    run = trees.run_benchmarks({"x": [trees.sandbox.python, "benchmarks/bench_x.py"]},
                               pairs=pairs, seed=1, metric=metric, aa=True)
    (bench,) = run.benchmarks
    return bench


def test_a_candidate_process_cannot_reach_the_judge(trees: Trees) -> None:
    trees.load_baseline(tar_of({"tests/test_probe.py": PROBE_JUDGE}))
    run = trees.run_tests("a")
    assert run.outcomes is not None and len(run.outcomes) == 6, run.output_tail
    assert set(run.outcomes.values()) == {"passed"}, run.output_tail


VALGRIND_FD = '''import errno, os

def attempt():
    seen = []
    try:
        os.write(1020, b"==1== I   refs:      1\\n")
        seen.append("written")
    except OSError as exc:
        seen.append(errno.errorcode[exc.errno])
    try:
        os.open("/proc/%d/fd/1020" % os.getpid(), os.O_WRONLY | os.O_APPEND)
        seen.append("reopened")
    except OSError as exc:
        seen.append(errno.errorcode[exc.errno])
    for undo in (lambda: os.ftruncate(1020, 0), lambda: os.lseek(1020, 0, os.SEEK_SET)):
        try:
            undo()
            seen.append("undone")
        except OSError as exc:
            seen.append(errno.errorcode[exc.errno])
    return seen

child = os.fork()
if child == 0:  # a forked child logs under its own pid, and is summed
    sum(range(100000))
    os._exit(0 if attempt() == ["EBADF", "EACCES", "EINVAL", "ESPIPE"] else 3)
_, status = os.waitpid(child, 0)
print(" ".join(attempt()), os.waitstatus_to_exitcode(status))
'''


def test_valgrinds_log_is_out_of_the_guests_reach(trees: Trees) -> None:
    """Valgrind reserves the top fds once RLIMIT_NOFILE is 1024: fd 1020 (its log) is EBADF to
    the guest, reopening it through /proc is EACCES (the pipe is root's), and a pipe cannot be
    truncated (EINVAL) or rewound (ESPIPE)."""
    bench = _bench(trees, VALGRIND_FD, metric="instructions")
    assert bench.failure is None, bench.failure
    assert bench.output["a"].head == "EBADF EACCES EINVAL ESPIPE 0\n"
    assert bench.a == bench.b and bench.a[0] > 1e6


def test_lines_appended_through_a_dup_of_the_log_are_tampering(trees: Trees) -> None:
    """Valgrind does not guard dup() of its own fds: the guest can append to the log, but an
    extra count for a process that has its own is tampering, and nothing can be removed."""
    code = ("import os\nfd = os.dup(1020)\n"
            "os.write(fd, b'==%d== I   refs:      1\\n' % os.getpid())\n")
    with pytest.raises(JudgeReportError, match="2 instruction counts"):
        _bench(trees, code, metric="instructions")


FORK_WORK = '''import os
N = 3_000_000
if os.fork() == 0:
    sum(range(N))
    os._exit(0)
os.wait()
print("done")
'''
INLINE_WORK = 'N = 3_000_000\nsum(range(N))\nprint("done")\n'
DETACHED_WORK = '''import os, sys
N = 3_000_000
read_end, write_end = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.dup2(write_end, 1)
        os.execv(sys.executable, [sys.executable, "-c", f"print(sum(range({N})))"])
    os._exit(0)
os.close(write_end)
os.wait()
while os.read(read_end, 100):  # to EOF: the worker is gone when the benchmark ends
    pass
print("done")
'''


def test_instruction_counts_sum_every_process(trees: Trees) -> None:
    inline = _bench(trees, INLINE_WORK, metric="instructions").a[0]
    for code in (FORK_WORK, DETACHED_WORK):
        bench = _bench(trees, code, metric="instructions")
        assert bench.failure is None, bench.failure
        assert bench.a[0] > inline, code


@pytest.mark.parametrize("code, problem", [
    ("import os, signal, time\nchild = os.fork()\nif child == 0:\n    sum(range(10**6))\n"
     "    time.sleep(60)\ntime.sleep(2)\nos.kill(child, signal.SIGKILL)\nos.wait()\n",
     "killed before valgrind could count it"),
    ("import os\nsum(range(10**6))\nos.execv('/bin/true', ['true'])\n", "headers"),
], ids=["fork-child-killed-uncounted", "exec-after-work"])
def test_work_valgrind_cannot_count_is_tampering(trees: Trees, code: str, problem: str) -> None:
    with pytest.raises(JudgeReportError, match=problem):
        _bench(trees, code, metric="instructions")


# VALGRIND_PRINTF through a client request: native code that is a no-op on the real CPU.
CLIENT_PRINTF = '''import ctypes, mmap
code = bytes.fromhex("4889f831d248c1c70348c1c70d48c1c73d48c1c7334887db4889d0c3")
page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
page.write(code)
address = ctypes.addressof(ctypes.c_char.from_buffer(page))
request = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p)(address)
text = ctypes.create_string_buffer(b"\\n==1== I   refs:      5\\n")
va_list = ctypes.create_string_buffer(32)  # VG_USERREQ__PRINTF_VALIST_BY_REF: fmt, &va_list
args = (ctypes.c_uint64 * 6)(0x1403, ctypes.addressof(text), ctypes.addressof(va_list), 0, 0, 0)
request(ctypes.addressof(args))
print("sent")
'''


def test_lines_the_guest_writes_into_valgrinds_log_are_tampering(trees: Trees) -> None:
    with pytest.raises(JudgeReportError, match="did not write"):
        _bench(trees, CLIENT_PRINTF, metric="instructions")
    # The same code on the real CPU is a harmless no-op.
    assert _bench(trees, CLIENT_PRINTF).output["a"].head == "sent\n"


def test_cpu_time_is_that_of_every_process(trees: Trees) -> None:
    """A detached worker (setsid, double fork, exec) does the work while the measured process
    blocks on a pipe: the container's cgroup counts it."""
    inline = _bench(trees, INLINE_WORK, pairs=3)
    detached = _bench(trees, DETACHED_WORK, pairs=3)
    assert detached.failure is None, detached.failure
    assert statistics.median(detached.a) > 0.8 * statistics.median(inline.a)
    assert min(detached.resources["a"]["rss"]) > 0


OUTLIVES = '''import os, sys, time
if os.fork() == 0:
    os.setsid()
    time.sleep(30)
    os._exit(0)
print("done")
'''


# The leader thread leaves (pthread_exit) and shows as a zombie, while another thread runs on.
ZOMBIE_LEADER = '''import ctypes, os, threading, time
if os.fork() == 0:
    os.setsid()
    threading.Thread(target=time.sleep, args=(30,)).start()
    ctypes.CDLL(None).pthread_exit(None)
print("done")
'''


@pytest.mark.parametrize("code", [OUTLIVES, ZOMBIE_LEADER], ids=["setsid-sleeper", "zombie-leader"])
def test_a_process_that_outlives_the_benchmark_fails_it_and_is_killed(trees: Trees,
                                                                      code: str) -> None:
    bench = _bench(trees, code)
    assert bench.failure and "left processes running" in bench.failure
    # Nothing of it survives into the next run: the same check passes on a clean benchmark.
    assert _bench(trees, INLINE_WORK).failure is None


CARRIED = '''import ctypes, os, sys
places = [os.environ["HOME"], "/tmp", "/dev/shm", "/work"]
found = [p for p in places if os.path.exists(os.path.join(p, "selfcode-marker"))]
for p in places:
    with open(os.path.join(p, "selfcode-marker"), "w") as fh:
        fh.write("42")
libc = ctypes.CDLL(None, use_errno=True)
if libc.shmget(0x5E1F, 4096, 0) != -1:
    found.append("sysv-shm")
libc.shmget(0x5E1F, 4096, 0o1600)  # IPC_CREAT | 0600
try:
    with open("cache.json", "w") as fh:
        fh.write("42")
    found.append("tree writable")
except OSError:
    pass
print("found:", " ".join(found) or "nothing")
'''


def test_no_state_carries_between_measured_processes(trees: Trees) -> None:
    """Every benchmark process starts from a fresh /tmp, $HOME, /dev/shm and /work, no SysV
    IPC object, and a tree it cannot write; the test run before it leaves nothing either."""
    test = "def test_leave_state():\n    exec(open('benchmarks/bench_x.py').read(), {})\n"
    trees.load_baseline(tar_of({"benchmarks/bench_x.py": CARRIED, "tests/test_state.py": test}))
    tests = trees.run_tests("a")
    assert tests.outcomes == {"tests/test_state.py::test_leave_state": "passed"}, \
        tests.output_tail
    run = trees.run_benchmarks({"x": [trees.sandbox.python, "benchmarks/bench_x.py"]},
                               pairs=2, seed=1, aa=True)
    (bench,) = run.benchmarks
    assert bench.failure is None, bench.failure
    assert bench.output["a"].head == "found: nothing\n"




def test_a_junit_rewritten_at_exit_is_tampering(trees: Trees) -> None:
    trees.load_baseline(tar_of({"tests/test_x.py": JUNIT_REWRITTEN_AT_EXIT}))
    with pytest.raises(JudgeReportError, match="tampered with or lost: tests: pytest exited"):
        trees.run_tests("a")


def test_a_candidate_cannot_change_the_tree_it_is_measured_in(trees: Trees) -> None:
    trees.load_baseline(tar_of({"lib.py": "X = 1\n"}))
    assert trees.apply("--- a/lib.py\n+++ b/lib.py\n@@ -1 +1 @@\n-X = 1\n+X = 2\n").ok
    listing = trees.sandbox.exec(["sh", "-c", f"ls -ld {trees.a} {trees.b}; cat {trees.b}/lib.py;"
                                  f" echo x > {trees.b}/lib.py"], timeout=10)
    lines = listing.stdout.decode().splitlines()
    assert all(line.startswith("dr-xr-xr-x") and " root root " in line for line in lines[:2])
    assert lines[2] == "X = 2" and listing.exit_code != 0
    assert os.path.basename(trees.a) != os.path.basename(trees.b)
    assert len(trees.a) == len(trees.b)
