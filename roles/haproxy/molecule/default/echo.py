"""Stand-in application server: answers with the request it got, as JSON.

/-/health/ answers 503 while /tmp/unhealthy exists; /slow takes three seconds.
"""

import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        if self.path == "/-/health/" and os.path.exists("/tmp/unhealthy"):
            self.send_response(503)
            self.end_headers()
            return
        if self.path == "/slow":
            time.sleep(3)
        body = json.dumps(
            {
                "host": socket.gethostname(),
                "port": self.server.server_address[1],
                "path": self.path,
                "headers": dict(self.headers),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


servers = [ThreadingHTTPServer(("0.0.0.0", int(port)), Echo) for port in sys.argv[1:]]
for server in servers[1:]:
    threading.Thread(target=server.serve_forever, daemon=True).start()
servers[0].serve_forever()
