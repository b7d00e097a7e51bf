"""`selfcode doctor --executor ray`: the cluster and each of its live nodes, checked for real.

The cluster is the session's (tests/ray_cluster.py: a head and a second node in a network
namespace with only `lo`, both on this machine's Docker engine). The doctor runs inside the
namespace as its users run it (the `selfcode` command), driven by a small Python driver that
serves the model endpoint from inside the namespace too (tests/openai_server.py), so that
every check but the cluster's passes and the exit code says what the cluster is worth.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from selfcode.doctor.cluster import head_endpoint, knock

from repos import make_repo

pytest_plugins = ["docker_util", "ray_cluster"]

SELFCODE = shutil.which("selfcode") or str(Path(sys.executable).with_name("selfcode"))
TESTS_DIR = str(Path(__file__).parent)
LIB = "def total(xs):\n    result = 0\n    for x in xs:\n        result += x\n    return result\n"
TESTS = "from lib import total\n\n\ndef test_total():\n    assert total([1, 2]) == 3\n"
PYPROJECT = "[tool.pytest.ini_options]\npythonpath = [\".\"]\n"

# Runs inside the namespace: the model endpoint there, then `selfcode doctor ... --json`.
DRIVER = """
import json, subprocess, sys
sys.path.insert(0, sys.argv[1])
from openai_server import OpenAIServer
server = OpenAIServer().start()
server.script(*["ok"] * 4)
try:
    done = subprocess.run([sys.argv[2], "doctor", sys.argv[3], "--json", "--base-url",
                           server.base_url, "--model", "m", *sys.argv[4:]],
                          capture_output=True, text=True, timeout=240)
finally:
    server.stop()
print("DOCTOR " + json.dumps({"rc": done.returncode, "out": done.stdout, "err": done.stderr}))
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"lib.py": LIB, "tests/test_lib.py": TESTS,
                                         "pyproject.toml": PYPROJECT})


def _doctor(cluster: Any, repo: Path, base_image: str, home: Path, *flags: str
            ) -> tuple[int, dict[str, Any], str]:
    env = cluster.driver_env(SELFCODE_BASE_IMAGE=base_image, SELFCODE_SANDBOX="docker",
                             SELFCODE_HOME=str(home), OPENAI_API_KEY="sk-test-doctor")
    done = cluster.run([sys.executable, "-c", DRIVER, TESTS_DIR, SELFCODE, str(repo),
                        "--executor", "ray", *flags], env=env, capture_output=True, text=True,
                       timeout=300)
    line = next((x for x in done.stdout.splitlines() if x.startswith("DOCTOR ")), None)
    assert line is not None, f"the driver failed: {done.stderr[-3000:]}"
    result = json.loads(line.removeprefix("DOCTOR "))
    doc = json.loads(result["out"]) if result["out"].strip() else {}
    return result["rc"], doc, result["err"]


def _named(doc: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    return [c for c in doc.get("checks", []) if c["name"].startswith(prefix)]


def _failed(doc: dict[str, Any]) -> list[str]:
    return [c["name"] for c in doc["checks"] if not c["ok"] and c.get("required", True)]


def test_every_live_node_is_checked_and_the_cluster_is_ready(
        ray_cluster: Any, repo: Path, base_image: str, tmp_path: Path) -> None:
    code, doc, err = _doctor(ray_cluster, repo, base_image, tmp_path / "home",
                             "--ray-address", ray_cluster.address)
    assert code == 0, (_failed(doc), err[-2000:])
    [cluster] = _named(doc, "ray cluster")
    assert cluster["ok"]
    assert cluster["detail"].startswith(f"connected to the cluster at {ray_cluster.address} "
                                        "(2 live node(s), 2 selfcode_timing slot(s)")
    nodes = _named(doc, "ray node ")
    assert len(nodes) == 2 and all(node["ok"] for node in nodes), nodes
    ids = {node_id[:12] for node_id in ray_cluster.node_ids().values()}
    assert {node["name"].rsplit(":", 1)[1] for node in nodes} == ids
    assert all("selfcode-sandbox:" in node["detail"] for node in nodes), nodes
    assert "ray node" in err  # each check is printed too, on stderr


def test_with_the_worker_killed_only_the_live_node_is_checked(
        ray_cluster: Any, repo: Path, base_image: str, tmp_path: Path) -> None:
    head = ray_cluster.head_node_id()[:12]
    try:
        ray_cluster.kill_worker()
        assert len(ray_cluster.alive_nodes(count=1, timeout=90)) == 1
        code, doc, err = _doctor(ray_cluster, repo, base_image, tmp_path / "home",
                                 "--ray-address", ray_cluster.address)
    finally:
        ray_cluster.restart_worker()
    assert code == 0, (_failed(doc), err[-2000:])
    [cluster] = _named(doc, "ray cluster")
    assert "(1 live node(s), 1 selfcode_timing slot(s), 1 node(s) ready" in cluster["detail"]
    [node] = _named(doc, "ray node ")
    assert node["ok"] and node["name"].endswith(head)


def test_an_address_where_nothing_listens_fails_at_once_with_one_sentence(
        ray_cluster: Any, repo: Path, base_image: str, tmp_path: Path) -> None:
    port = _closed_port(ray_cluster)
    code, doc, err = _doctor(ray_cluster, repo, base_image, tmp_path / "home",
                             "--ray-address", f"127.0.0.1:{port}")
    assert code == 1
    assert _failed(doc) == ["ray cluster"]
    [cluster] = _named(doc, "ray cluster")
    assert cluster["detail"] == (
        f"nothing answers at the Ray cluster's head 127.0.0.1:{port} (Connection refused); "
        "start it there with ray start --head --port 6379 --resources "
        "'{\"selfcode_timing\": 1}', or name the running head with --ray-address HOST:PORT.")
    assert cluster["seconds"] < 10  # not Ray's own wait, which lasts minutes
    assert not _named(doc, "ray node ")
    assert "Traceback" not in err


def _closed_port(cluster: Any) -> int:
    """A port of the namespace's loopback where nothing listens (bound, then closed)."""
    out = cluster.python("import socket\ns = socket.socket()\ns.bind(('127.0.0.1', 0))\n"
                         "print(s.getsockname()[1])\ns.close()\n")
    return int(out.split()[-1])


@pytest.mark.parametrize(("address", "expected"), [
    (None, None), ("auto", None), ("", None),
    ("10.0.0.2:6379", ("10.0.0.2", 6379)),
    ("head.example:7000", ("head.example", 7000)),
    ("10.0.0.2", ("10.0.0.2", 6379)),
    ("ray://10.0.0.2:10001", ("10.0.0.2", 10001)),
    ("[::1]:6379", ("::1", 6379)),
])
def test_the_head_is_read_from_the_address(address: str | None,
                                           expected: tuple[str, int] | None) -> None:
    assert head_endpoint(address) == expected


@pytest.mark.parametrize("address", ["10.0.0.2:port", "10.0.0.2:6379/x", ":6379"])
def test_a_malformed_address_is_refused(address: str) -> None:
    with pytest.raises(ValueError):
        head_endpoint(address)


def test_knock_tells_a_listening_port_from_a_closed_one() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert knock("127.0.0.1", port) is None
    assert knock("127.0.0.1", port) == "Connection refused"
