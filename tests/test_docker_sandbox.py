"""The docker sandbox against a real engine: every hardening flag on its own, hostile candidates.

Skipped without an engine; failing instead when SELFCODE_REQUIRE_DOCKER=1 (see docker_util.py).
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from io import BytesIO
from pathlib import Path

import docker
import pytest

from selfcode.errors import SandboxBroken, SandboxError
from selfcode.sandbox import execution as docker_backend
from selfcode.sandbox.base import Sandbox
from selfcode.sandbox.deps import DependencySet, dependencies_from_files
from selfcode.sandbox.docker import DockerSandbox, cleanup_dead_runs, docker_available
from selfcode.sandbox.engine import container_error
from selfcode.sandbox.execution import KILL_AFTER, MAX_OUTPUT
from selfcode.sandbox.image import build_image, image_tag
from selfcode.sandbox.leftovers import LABEL_HOST, LABEL_PID, LABEL_RUN

pytest.register_assert_rewrite("docker_util")
from docker_util import HARNESS_DIR, REPO_ROOT, TEST_CONFIG, containers_of_run  # noqa: E402

pytestmark = pytest.mark.docker
# The fixtures (docker_client, base_image, sandbox_image, sandbox...) live in docker_util.py.
pytest_plugins = ["docker_util"]

SECRET = "sk-test-SECRET123"


def run_py(box: DockerSandbox, code: str, timeout: float = 10):  # type: ignore[no-untyped-def]
    return box.exec([box.python, "-c", code], timeout=timeout)


def sh(box: DockerSandbox, script: str, timeout: float = 10):  # type: ignore[no-untyped-def]
    return box.exec(["sh", "-c", script], timeout=timeout)


def status_field(box: DockerSandbox, name: str) -> str:
    result = sh(box, "cat /proc/self/status")
    assert result.ok, result
    for line in result.stdout.decode().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{name} missing from /proc/self/status")


def leftover_processes(box: DockerSandbox) -> list[str]:
    """Command lines of uid-1000 processes other than the probe itself."""
    result = run_py(
        box,
        "import os\n"
        "me = os.getpid()\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try:\n"
        "        st = os.stat('/proc/' + pid)\n"
        "        cmd = open('/proc/%s/cmdline' % pid, 'rb').read().replace(b'\\0', b' ')\n"
        "    except OSError:\n"
        "        continue\n"
        "    if (st.st_uid == 1000 and int(pid) != me and b'selfcode-exec' not in cmd\n"
        "            and not cmd.startswith(b'timeout ')):\n"
        "        print(pid, cmd.decode(errors='replace'))\n",
    )
    assert result.ok, result
    return [line for line in result.stdout.decode().splitlines() if line.strip()]


# --- the protocol and plain behaviour ----------------------------------------------------------


def test_implements_the_sandbox_protocol(sandbox: DockerSandbox) -> None:
    assert isinstance(sandbox, Sandbox)
    assert (sandbox.kind, sandbox.isolated, sandbox.root) == ("docker", True, "/work")
    assert sandbox.python == "/opt/venv/bin/python"
    assert sandbox.harness == "/opt/selfcode/harness.py"


def test_exec_separates_streams_and_reports_the_exit_code(sandbox: DockerSandbox) -> None:
    result = sandbox.exec(
        ["sh", "-c", 'echo out; echo err >&2; pwd; echo "$GREETING"; exit 3'],
        timeout=10,
        cwd="/tmp",
        env={"GREETING": "hello"},
    )
    assert result.exit_code == 3
    assert result.stdout == b"out\n/tmp\nhello\n"
    assert result.stderr == b"err\n"
    assert not result.timed_out and result.killed_reason is None


def test_selfcode_dependencies_git_and_valgrind_are_in_the_image(sandbox: DockerSandbox) -> None:
    result = run_py(
        sandbox,
        "import typer, rich, pydantic, openai, git, jinja2, scipy, docker, pytest; print('ok')",
        timeout=60,
    )
    assert result.ok and result.stdout == b"ok\n", result
    assert sh(sandbox, "git --version && valgrind --version").ok


# --- hardening, one flag at a time -------------------------------------------------------------


def test_runs_as_non_root(sandbox: DockerSandbox) -> None:
    result = sh(sandbox, "id -u; id -g")
    assert result.ok
    uid, gid = result.stdout.decode().split()
    assert uid != "0" and gid != "0"
    assert status_field(sandbox, "Uid").split()[0] == "1000"


def test_has_no_capabilities(sandbox: DockerSandbox) -> None:
    assert int(status_field(sandbox, "CapEff"), 16) == 0
    assert int(status_field(sandbox, "CapPrm"), 16) == 0
    assert int(status_field(sandbox, "CapAmb"), 16) == 0
    # The bounding set keeps what the judge (root) needs to demote and kill candidates
    # (CAP_KILL, CAP_SETGID, CAP_SETUID: bits 5-7); no-new-privileges: uid 1000 gains none.
    assert int(status_field(sandbox, "CapBnd"), 16) & ~0xE0 == 0
    assert status_field(sandbox, "NoNewPrivs") == "1"


def test_no_new_privileges(sandbox: DockerSandbox) -> None:
    assert status_field(sandbox, "NoNewPrivs") == "1"


def test_root_filesystem_is_read_only(sandbox: DockerSandbox) -> None:
    for path in ("/etc/selfcode-probe", "/usr/selfcode-probe", "/opt/venv/selfcode-probe"):
        result = sh(sandbox, f"touch {path}")
        assert result.exit_code != 0, path
    mounts = sh(sandbox, "cat /proc/self/mounts").stdout.decode().splitlines()
    root = next(line for line in mounts if line.split()[1] == "/")
    assert "ro" in root.split()[3].split(",")


def test_work_is_a_writable_capped_tmpfs(sandbox: DockerSandbox) -> None:
    result = sh(sandbox, "echo data > /work/file && cat /work/file && mkdir -p /work/a/b")
    assert result.ok and result.stdout == b"data\n"
    mounts = sh(sandbox, "cat /proc/self/mounts").stdout.decode().splitlines()
    work = next(line.split() for line in mounts if line.split()[1] == "/work")
    assert work[2] == "tmpfs"
    options = work[3].split(",")
    assert "nosuid" in options and "nodev" in options
    assert any(o.startswith("size=") for o in options)
    too_big = sh(sandbox, "head -c 100M /dev/zero > /work/big", timeout=20)
    assert too_big.exit_code != 0 and b"No space left" in too_big.stderr


def test_tmp_and_home_are_writable_but_size_capped(sandbox: DockerSandbox) -> None:
    small = sh(sandbox, 'head -c 1M /dev/zero > /tmp/f && head -c 1M /dev/zero > "$HOME/f"')
    assert small.ok, small
    assert sh(sandbox, 'test "$HOME" = /home/sandbox && test "$TMPDIR" = /tmp').ok
    for path, limit in (("/tmp/big", 32), ("$HOME/big", 16)):
        big = sh(sandbox, f'head -c {limit + 8}M /dev/zero > "{path}"', timeout=20)
        assert big.exit_code != 0 and b"No space left" in big.stderr, (path, big)
    mounts = sh(sandbox, "cat /proc/self/mounts").stdout.decode().splitlines()
    for target in ("/tmp", "/home/sandbox"):
        entry = next(line.split() for line in mounts if line.split()[1] == target)
        assert entry[2] == "tmpfs" and "nosuid" in entry[3].split(","), entry


def test_no_network_interface_but_loopback(sandbox: DockerSandbox) -> None:
    result = sh(sandbox, "cat /proc/net/dev")
    assert result.ok
    lines = result.stdout.decode().splitlines()[2:]
    interfaces = sorted(line.split(":", 1)[0].strip() for line in lines if ":" in line)
    assert interfaces == ["lo"]


def _host_addresses() -> list[str]:
    addresses = {"172.17.0.1"}  # the default bridge's gateway: the host, from a normal container
    with contextlib.suppress(OSError):
        addresses.update(socket.gethostbyname_ex(socket.gethostname())[2])
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=False)
        addresses.update(out.stdout.split())
    except OSError:
        pass
    return sorted(a for a in addresses if ":" not in a)


def test_candidate_cannot_reach_the_host_or_anything_else(sandbox: DockerSandbox) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", 0))
    server.listen(16)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted: list[object] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, peer = server.accept()
            except OSError:
                continue
            accepted.append(peer)
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    targets = [("127.0.0.1", port), *((a, port) for a in _host_addresses()), ("1.1.1.1", 443)]
    code = (
        "import socket, sys\n"
        f"targets = {targets!r}\n"
        "reached = []\n"
        "for host, port in targets:\n"
        "    s = socket.socket(); s.settimeout(2)\n"
        "    try:\n"
        "        s.connect((host, port)); reached.append(host)\n"
        "    except OSError as e:\n"
        "        print(host, type(e).__name__, e)\n"
        "try:\n"
        "    socket.getaddrinfo('pypi.org', 443); reached.append('dns')\n"
        "except OSError as e:\n"
        "    print('dns', e)\n"
        "print('REACHED', reached)\n"
        "sys.exit(1 if reached else 0)\n"
    )
    try:
        result = run_py(sandbox, code, timeout=30)
    finally:
        stop.set()
        thread.join(2)
        server.close()
    assert result.exit_code == 0, result.stdout.decode()
    assert b"REACHED []" in result.stdout
    assert accepted == []


def test_no_host_secret_enters_the_sandbox(
    sandbox: DockerSandbox, docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("SELFCODE_TEST_TOKEN", SECRET)
    listed = sh(sandbox, "env")
    assert listed.ok
    names = {line.split("=", 1)[0] for line in listed.stdout.decode().splitlines()}
    assert names <= {"PATH", "LANG", "HOME", "TMPDIR", "PYTHONDONTWRITEBYTECODE",
                     "PYTHONHASHSEED", "PWD"}, names
    every = sh(sandbox, "cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; exit 0")
    for result in (listed, every):
        assert SECRET.encode() not in result.stdout + result.stderr
        assert b"OPENAI_API_KEY" not in result.stdout + result.stderr
    env_of_container = docker_client.api.inspect_container(sandbox.container_id)["Config"]["Env"]
    assert not any(SECRET in item for item in env_of_container)
    # Even selfcode's own code cannot hand a host secret over by mistake.
    with pytest.raises(SandboxError, match="credential"):
        sandbox.exec(["true"], timeout=5, env={"SOMETHING": SECRET})
    with pytest.raises(SandboxError, match="credential"):
        sandbox.exec(["true"], timeout=5, env={"API_KEY": "whatever"})


def test_staged_files_are_readable_not_writable(sandbox: DockerSandbox) -> None:
    path = sandbox.stage("payload.diff", b"content\n")
    assert path == "/in/payload.diff"
    assert sh(sandbox, f"cat {path}").stdout == b"content\n"
    for attempt in (f"echo x >> {path}", f"rm -f {path}", "touch /in/new", f"chmod 666 {path}"):
        result = sh(sandbox, attempt)
        assert result.exit_code != 0, attempt
    assert sh(sandbox, f"cat {path}").stdout == b"content\n"
    # Staging again under the same name replaces the file.
    sandbox.stage("payload.diff", b"second\n")
    assert sh(sandbox, f"cat {path}").stdout == b"second\n"
    with pytest.raises(ValueError):
        sandbox.stage("../escape", b"x")


def test_harness_dir_is_read_only(sandbox: DockerSandbox) -> None:
    assert sh(sandbox, f"test -r {sandbox.harness}").ok
    assert sh(sandbox, f"head -c 100 {sandbox.harness}").stdout
    for attempt in (f"echo x >> {sandbox.harness}", "touch /opt/selfcode/new",
                    f"rm -f {sandbox.harness}"):
        assert sh(sandbox, attempt).exit_code != 0, attempt
    assert (HARNESS_DIR / "harness.py").is_file()


# --- hostile candidates ------------------------------------------------------------------------


def test_setsid_daemon_is_killed_and_nothing_survives_close(
    sandbox_image: str, docker_client: docker.DockerClient
) -> None:
    run_id = f"test-daemon-{os.getpid()}"
    box = DockerSandbox.start(TEST_CONFIG, sandbox_image, run_id, HARNESS_DIR, client=docker_client)
    stage_dir = box._stage_dir.parent
    try:
        started = sh(box, "setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo started")
        assert started.ok and started.stdout == b"started\n"
        # The daemon does not survive into the next command.
        assert leftover_processes(box) == []
        assert containers_of_run(docker_client, run_id)
        sh(box, "setsid sleep 1000 </dev/null >/dev/null 2>&1 &")
    finally:
        box.close()
    assert containers_of_run(docker_client, run_id) == []
    assert not stage_dir.exists()
    box.close()  # idempotent
    with pytest.raises(SandboxError, match="closed"):
        box.exec(["true"], timeout=5)


def test_fork_bomb_is_contained_by_the_pids_limit(sandbox: DockerSandbox) -> None:
    spawner = run_py(
        sandbox,
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    for _ in range(5000):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(1000); os._exit(0)\n"
        "        n += 1\n"
        "except OSError as exc:\n"
        "    print('fork failed after', n, exc); raise SystemExit(1)\n",
        timeout=20,
    )
    assert spawner.exit_code == 1 and b"fork failed" in spawner.stdout, spawner
    assert not spawner.timed_out and spawner.killed_reason is None  # an ordinary failure
    assert b"process limit (128) was reached" in spawner.stderr
    bomb = sandbox.exec(["bash", "-c", "bomb() { bomb | bomb & }; bomb; sleep 60"], timeout=3)
    assert bomb.timed_out and bomb.killed_reason == "timeout"
    assert bomb.duration < 3 + KILL_AFTER + 3
    # Still answers, with nothing left behind.
    assert sh(sandbox, "echo alive").stdout == b"alive\n"
    assert leftover_processes(sandbox) == []


def test_memory_hog_is_killed_as_out_of_memory(sandbox: DockerSandbox) -> None:
    result = run_py(sandbox, "x = bytearray(1024 * 1024 * 1024); x[::4096] = b'x' * len(x[::4096])",
                    timeout=30)
    assert result.killed_reason == "out of memory", result
    assert not result.timed_out and not result.ok
    assert sh(sandbox, "echo alive").stdout == b"alive\n"


def test_infinite_loop_times_out(sandbox: DockerSandbox) -> None:
    start = time.monotonic()
    result = run_py(sandbox, "while True: pass", timeout=2)
    elapsed = time.monotonic() - start
    assert result.timed_out and result.killed_reason == "timeout"
    assert 2 <= elapsed < 2 + KILL_AFTER + docker_backend.WATCHDOG_GRACE
    # A loop that ignores SIGTERM is killed KILL_AFTER seconds later.
    stubborn = run_py(
        sandbox,
        "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: pass",
        timeout=1,
    )
    assert stubborn.timed_out and stubborn.exit_code == 137
    assert 1 + KILL_AFTER <= stubborn.duration < 1 + KILL_AFTER + 3
    assert sh(sandbox, "echo alive").stdout == b"alive\n"


def test_gigabyte_of_stdout_is_truncated_without_eating_host_memory(
    sandbox: DockerSandbox,
) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = run_py(
        sandbox,
        "import sys\nchunk = b'y' * (1 << 20)\n"
        "for _ in range(1024): sys.stdout.buffer.write(chunk)\n"
        "sys.stdout.flush(); print('done', file=sys.stderr)",
        timeout=120,
    )
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert result.exit_code == 0, result.stderr[-500:]
    assert len(result.stdout) == MAX_OUTPUT
    assert result.stderr.startswith(b"done\n")
    assert b"stdout truncated" in result.stderr
    assert grown_kib < 200 * 1024  # far below the gigabyte that went through


def test_watchdog_kills_a_hung_exec_and_the_sandbox_reports_it_dead(
    sandbox: DockerSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docker_backend, "WATCHDOG_GRACE", 0.5)
    # SIGSTOP the wrapper: `timeout` inside can no longer end the exec, only the host can.
    result = sh(sandbox, "kill -STOP $(cut -d' ' -f4 /proc/$PPID/stat); exit 0", timeout=1)
    assert result.timed_out and result.killed_reason == "timeout"
    assert result.duration < 1 + KILL_AFTER + 0.5 + 5
    with pytest.raises(SandboxError, match="unusable"):
        sandbox.exec(["true"], timeout=5)


def test_ctrl_c_during_exec_removes_the_container(
    sandbox_image: str, docker_client: docker.DockerClient
) -> None:
    run_id = f"test-ctrl-c-{os.getpid()}"
    main = threading.main_thread().ident
    assert main is not None
    timer = threading.Timer(1.0, signal.pthread_kill, args=(main, signal.SIGINT))
    with (
        pytest.raises(KeyboardInterrupt),
        DockerSandbox.start(
            TEST_CONFIG, sandbox_image, run_id, HARNESS_DIR, client=docker_client
        ) as box,
    ):
        timer.start()
        box.exec(["sleep", "30"], timeout=60)
    timer.cancel()
    assert containers_of_run(docker_client, run_id) == []


def test_container_removed_under_the_sandbox_is_a_clear_error(
    sandbox: DockerSandbox, docker_client: docker.DockerClient
) -> None:
    docker_client.api.remove_container(sandbox.container_id, force=True)
    with pytest.raises(SandboxError, match="stopped unexpectedly"):
        sandbox.exec(["true"], timeout=5)


def test_engine_gone_mid_run_is_a_clear_error(sandbox: DockerSandbox) -> None:
    real = sandbox.client
    sandbox.client = docker.DockerClient(
        base_url="unix:///nonexistent-selfcode.sock", version="1.41", timeout=5
    )
    try:
        with pytest.raises(SandboxError, match="Docker engine stopped answering"):
            sandbox.exec(["true"], timeout=5)
    finally:
        sandbox.client = real


def test_a_quiet_command_is_judged_by_its_timeout_not_the_clients_read_timeout(
    sandbox_image: str,
) -> None:
    """70 s without a byte of output, with the engine client selfcode really uses (its socket
    read timeout is 60 s): the command's own 90 s timeout decides, and it finishes."""
    run_id = f"test-quiet-{os.getpid()}"
    with DockerSandbox.start(TEST_CONFIG, sandbox_image, run_id, HARNESS_DIR) as box:
        assert box.client.api.timeout == 60
        result = box.exec(["sh", "-c", "sleep 70; echo done"], timeout=90)
    assert result.ok and result.stdout == b"done\n", result
    assert not result.timed_out and 70 <= result.duration < 90


def test_init_killed_during_a_command_is_a_broken_sandbox(
    sandbox: DockerSandbox, docker_client: docker.DockerClient
) -> None:
    """The container's PID 1 dies mid-command while the engine answers: `SandboxBroken` (the
    candidate is rejected, the sandbox replaced), never the engine's error, never a result."""
    killer = threading.Timer(1.0, docker_client.api.kill, args=(sandbox.container_id,))
    killer.start()
    try:
        with pytest.raises(SandboxBroken, match="stopped unexpectedly") as caught:
            sandbox.exec(["sleep", "30"], timeout=60)
    finally:
        killer.cancel()
    assert "Docker engine" not in str(caught.value) and "\n" not in str(caught.value)
    assert docker_available() is None
    with pytest.raises(SandboxBroken, match="unusable"):
        sandbox.exec(["true"], timeout=5)


def test_a_dead_engine_is_the_engines_error_not_a_broken_sandbox(sandbox: DockerSandbox) -> None:
    dead = docker.DockerClient(base_url="unix:///nonexistent-selfcode.sock", version="1.41",
                               timeout=5)
    real, sandbox.client = sandbox.client, dead
    try:
        with pytest.raises(SandboxError, match="Docker engine stopped answering") as caught:
            sandbox.exec(["true"], timeout=5)
        assert not isinstance(caught.value, SandboxBroken)
        # The output stream broke and the engine cannot say why: still the engine's error.
        error, why = container_error(dead, sandbox.container_id, sandbox.name,
                                     ConnectionResetError("stream closed"))
        assert not isinstance(error, SandboxBroken) and why is None
        assert "Docker engine stopped answering" in str(error)
    finally:
        sandbox.client = real
    assert sandbox.exec(["true"], timeout=5).ok


# --- leftovers, availability, the image --------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_cleanup_dead_runs_removes_only_dead_runs(
    docker_client: docker.DockerClient, sandbox_image: str
) -> None:
    host = socket.gethostname()
    dead = docker_client.containers.create(
        sandbox_image, ["sleep", "infinity"], entrypoint=[],
        labels={LABEL_RUN: "test-dead", LABEL_PID: str(_dead_pid()), LABEL_HOST: host},
    )
    alive = docker_client.containers.create(
        sandbox_image, ["sleep", "infinity"], entrypoint=[],
        labels={LABEL_RUN: "test-alive", LABEL_PID: str(os.getpid()), LABEL_HOST: host},
    )
    try:
        removed = cleanup_dead_runs(docker_client)
        assert dead.name in removed
        assert alive.name not in removed
        assert containers_of_run(docker_client, "test-dead") == []
        assert containers_of_run(docker_client, "test-alive") == [alive.name]
    finally:
        for container in (dead, alive):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)


def test_docker_available_says_why_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    reason = docker_available()
    assert isinstance(reason, str) and reason.endswith(".")
    assert "nonexistent.sock" in reason


def test_docker_available_when_the_engine_answers(docker_client: docker.DockerClient) -> None:
    assert docker_available() is None


def test_image_tag_is_stable_and_follows_the_dependencies(
    sandbox_build: object,
    sandbox_image: str,
    base_image: str,
    docker_client: docker.DockerClient,
    docker_state_dir: Path,
    tmp_path: Path,
) -> None:
    again = build_image(_declared(REPO_ROOT), docker_state_dir, base_image, client=docker_client)
    assert again.tag == sandbox_image and not again.built
    base_id = str(docker_client.images.get(base_image).id)

    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(REPO_ROOT / "pyproject.toml", repo / "pyproject.toml")
    first = image_tag(_declared(repo), base_image, base_id)
    assert first == sandbox_image
    assert image_tag(_declared(repo), base_image, base_id) == first
    # An edit that does not touch the dependencies keeps the image...
    with open(repo / "pyproject.toml", "a") as fh:
        fh.write("\n[tool.unrelated]\nkey = 1\n")
    assert image_tag(_declared(repo), base_image, base_id) == first
    # ...a new requirements file or a changed one does not.
    (repo / "requirements.txt").write_text("attrs\n")
    second = image_tag(_declared(repo), base_image, base_id)
    assert second != first
    (repo / "requirements.txt").write_text("attrs==23.2.0\n")
    assert image_tag(_declared(repo), base_image, base_id) not in {first, second}


def test_harness_runs_a_small_repository_in_the_sandbox(sandbox: DockerSandbox) -> None:
    files = {
        "calc.py": "def add(a, b):\n    return a + b\n",
        "tests/test_calc.py": (
            "from calc import add\n\ndef test_add():\n    assert add(1, 2) == 3\n"
        ),
    }
    buf = BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, BytesIO(data))
    staged = sandbox.stage("repo.tar", buf.getvalue())
    assert sh(sandbox, f"mkdir -p /work/a && tar -xf {staged} -C /work/a").ok
    result = sandbox.exec([sandbox.python, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          timeout=60, cwd="/work/a", env={"PYTHONPATH": "/work/a"})
    assert result.ok, result.stdout.decode() + result.stderr.decode()
    assert b"1 passed" in result.stdout


def _declared(repo: Path) -> DependencySet:
    """The declarations of a directory's pyproject.toml and requirements*.txt."""
    files = [repo / "pyproject.toml", *repo.glob("requirements*.txt")]
    return dependencies_from_files({p.name: p.read_text("utf-8") for p in files if p.is_file()})


def _tiny_repo(tmp_path: Path, requirements: str | None = None) -> Path:
    repo = tmp_path / "tiny"
    repo.mkdir()
    (repo / "pyproject.toml").write_text('[project]\nname = "tiny"\nversion = "0"\n')
    if requirements is not None:
        (repo / "requirements.txt").write_text(requirements)
    return repo


def test_build_failure_is_one_clear_sentence_with_the_log_tail(
    base_image: str, docker_client: docker.DockerClient, docker_state_dir: Path, tmp_path: Path
) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("ARG BASE\nFROM ${BASE}\nRUN echo selfcode-about-to-fail && false\n")
    with pytest.raises(SandboxError) as caught:
        build_image(_declared(_tiny_repo(tmp_path)), docker_state_dir, base_image,
                    client=docker_client,
                    dockerfile=dockerfile)
    message = str(caught.value)
    assert "failed" in message and "selfcode-about-to-fail" in message
    assert "\n" not in message


def test_missing_base_image_says_how_to_build_one_offline(
    docker_client: docker.DockerClient, docker_state_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(SandboxError, match=r"bootstrap-base\.sh") as caught:
        build_image(_declared(_tiny_repo(tmp_path)), docker_state_dir,
                    "selfcode-no-such-base-image:never", client=docker_client)
    assert "SELFCODE_BASE_IMAGE" in str(caught.value)


def test_dependency_download_failure_is_a_sandbox_error(
    base_image: str, docker_client: docker.DockerClient, docker_state_dir: Path, tmp_path: Path
) -> None:
    repo = _tiny_repo(tmp_path, "selfcode-no-such-package-zz9==0.0.1\n")
    with pytest.raises(SandboxError, match="pip could not download"):
        build_image(_declared(repo), docker_state_dir, base_image, client=docker_client)
