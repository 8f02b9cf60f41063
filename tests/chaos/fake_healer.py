"""A stand-in for ``healer`` (``run``, ``user add`` and ``token create``) that answers the
API with nothing: lets runner tests reach the observe step without the real daemon."""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

ROUTES = {
    "/healthz": {"status": "ok"},
    "/api/v1/incidents": [],
    "/api/v1/actions": [],
    "/api/v1/snapshot": {"metrics": {}},
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        body = json.dumps(ROUTES.get(path, [])).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def main() -> int:
    if sys.argv[1:2] == ["user"]:
        print("user chaos added with role admin")
        return 0
    if sys.argv[1:2] == ["token"]:
        print("fake-token")
        return 0
    HTTPServer(("127.0.0.1", int(os.environ["HEALER_PORT"])), Handler).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
