"""A local OpenAI-compatible ``/chat/completions`` server for tests of our API clients (caption refiner, judge).

Answers come from a queue of ``(status, body, headers)``; when the queue is empty, ``default`` answers. A ``str`` body
with status 200 is wrapped into a chat-completion JSON (``"RAW:..."`` strings and ``bytes`` go out as they are).
Every request is recorded as ``{"time", "path", "auth", "body"}``. Port 0 = a free port.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def chat_body(text: str) -> bytes:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()


class MockOpenAI:
    def __init__(self, queue=(), default=(500, b"script exhausted", {})):
        self.queue, self.default, self.requests = list(queue), default, []
        mock = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                mock.requests.append(
                    {
                        "time": time.monotonic(),
                        "path": self.path,
                        "auth": self.headers.get("Authorization"),
                        "body": body,
                    }
                )
                status, payload, headers = mock.queue.pop(0) if mock.queue else mock.default
                if isinstance(payload, str):
                    raw = status != 200 or payload.startswith("RAW:")
                    payload = payload.removeprefix("RAW:").encode() if raw else chat_body(payload)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> MockOpenAI:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
