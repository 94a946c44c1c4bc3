"""A local HTTP file server for tests, with switches for the failures a real server has."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class FileServer:
    """Serves `files` (URL path -> bytes) and records each request as (path, Range header).

    Switches, all keyed by URL path:
      cut_first:     on the first request, announce the full length but close after K bytes;
      status:        always answer with this HTTP status and no body;
      ignore_range:  answer a Range request with 200 and the whole file;
      reject_range:  answer any Range request with 416.
    """

    files: dict[str, bytes] = field(default_factory=dict)
    cut_first: dict[str, int] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)
    ignore_range: set[str] = field(default_factory=set)
    reject_range: set[str] = field(default_factory=set)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    base_url: str = ""

    def requests_for(self, path: str) -> list[str | None]:
        """The Range header of each request for `path`, in order (None: no Range)."""
        return [range_ for requested, range_ in self.requests if requested == path]


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            range_header = self.headers.get("Range")
            server.requests.append((self.path, range_header))
            if self.path in server.status:
                self.send_error(server.status[self.path])
                return
            body = server.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            if range_header and self.path in server.reject_range:
                self.send_error(416)
                return
            start = 0
            if range_header and self.path not in server.ignore_range:
                start = int(re.fullmatch(r"bytes=(\d+)-", range_header).group(1))
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            cut = server.cut_first.pop(self.path, None)
            self.wfile.write(body[start:] if cut is None else body[start : start + cut])

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

    return Handler


@contextmanager
def serve(server: FileServer) -> Iterator[FileServer]:
    """Run `server` on 127.0.0.1 on a free port in a background thread."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    server.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
