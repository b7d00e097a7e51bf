"""A local HTTP server on 127.0.0.1 that records every request and answers 404.

The host-safety tests point what a repository or a candidate may name (an index, a wheel URL,
an endpoint, a registry, an LFS server) at it: any request it sees is the host doing what the
repository chose.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Request = dict[str, str]
"""One request: {"line": "GET /path", "headers": JSON of its headers, "body": its body}."""


@contextmanager
def recording_server() -> Iterator[tuple[str, list[Request]]]:
    """http://127.0.0.1:PORT, and the list that every request it gets is appended to."""
    seen: list[Request] = []

    class Recorder(BaseHTTPRequestHandler):
        def _record(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(size).decode("utf-8", "replace") if size else ""
            seen.append({"line": f"{self.command} {self.path}",
                         "headers": json.dumps(dict(self.headers)), "body": body})
            self.send_error(404)

        do_GET = do_HEAD = do_POST = do_PUT = _record

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
