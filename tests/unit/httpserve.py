# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A local HTTP server for download tests: serves a folder, and can fail or damage chosen paths.

``faults[path]`` is a list of what the next requests of that path get, one item each: an HTTP status
(503), ``"cut"`` (the headers promise the whole file, half of it is sent, the connection closes) or
``"damage"`` (the file with one byte flipped). Requests are counted per path in ``hits``.
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections import Counter
from collections.abc import Iterator


class _Handler(http.server.SimpleHTTPRequestHandler):
    faults: dict[str, list] = {}
    hits: Counter = Counter()

    def log_message(self, *args) -> None:  # quiet
        return

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        path = self.path.split("?", 1)[0]
        self.hits[path] += 1
        queue = self.faults.get(path)
        fault = queue.pop(0) if queue else None
        if isinstance(fault, int):
            self.send_error(fault)
            return
        if fault in ("cut", "damage"):
            with open(self.translate_path(path), "rb") as handle:
                body = handle.read()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if fault == "cut":
                self.wfile.write(body[:len(body) // 2])
                self.close_connection = True
            else:
                self.wfile.write(body[:-1] + bytes([body[-1] ^ 0xFF]))
            return
        super().do_GET()


class Server:
    """A running server: ``url`` ends with '/', ``faults`` and ``hits`` as in the module docstring."""

    def __init__(self, folder: str) -> None:
        self.faults: dict[str, list] = {}
        self.hits: Counter = Counter()
        handler = type("Handler", (_Handler,), {"faults": self.faults, "hits": self.hits})
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=folder))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextlib.contextmanager
def serve(folder: str) -> Iterator[Server]:
    """Serve ``folder`` over HTTP on 127.0.0.1 for the life of the block."""
    with Server(folder) as server:
        yield server
