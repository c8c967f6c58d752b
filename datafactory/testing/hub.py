"""A Hugging Face Hub stand-in serving dataset repos for ``HF_ENDPOINT`` (tests of hub inputs).

``with HubServer({"org/data": rows}) as hub:`` serves each repo as one ``data.jsonl`` file, answering
the few endpoints ``datasets.load_dataset(name, streaming=True)`` asks for (the repo's info and file
tree, ``resolve`` of its files; 404 ``EntryNotFound`` for the optional ones such as ``README.md``), and
counts in ``data_reads`` how often a data file was fetched — how many times the input was streamed.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SHA = "0" * 40


class HubServer:
    def __init__(self, datasets: dict[str, list[dict[str, Any]]]) -> None:
        self.files = {name: b"".join(json.dumps(r).encode() + b"\n" for r in rows) for name, rows in datasets.items()}
        self.data_reads: Counter[str] = Counter()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                self._answer(head=True)

            def do_GET(self) -> None:
                self._answer(head=False)

            def _answer(self, head: bool) -> None:
                status, body = hub._route(self.path, head)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/json")
                self.send_header("ETag", '"datafactory"')
                self.send_header("X-Repo-Commit", SHA)
                if status == 404:
                    self.send_header("X-Error-Code", "EntryNotFound")
                self.end_headers()
                if not head:
                    self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def _route(self, path: str, head: bool) -> tuple[int, bytes]:
        path = path.split("?", 1)[0]
        for name, data in self.files.items():
            if path in (f"/api/datasets/{name}", f"/api/datasets/{name}/revision/main",
                        f"/api/datasets/{name}/revision/{SHA}"):
                return 200, json.dumps({"id": name, "sha": SHA, "private": False, "disabled": False,
                                        "gated": False, "siblings": [{"rfilename": "data.jsonl"}]}).encode()
            if path.startswith(f"/api/datasets/{name}/tree/"):
                return 200, json.dumps([{"type": "file", "path": "data.jsonl", "size": len(data),
                                         "oid": "1" * 40}]).encode()
            if path.startswith(f"/datasets/{name}/resolve/") and path.endswith("/data.jsonl"):
                if not head:
                    self.data_reads[name] += 1
                return 200, data
        return 404, b"{}"

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
