"""A loopback HTTP server for the download tests: files from a folder, the requests counted, and
transfers that can be cut short (a server that announces more bytes than it sends)."""

import contextlib
import http.server
import os
import socket
import threading


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the http.server API)
        server = self.server
        path = self.path.split("?", 1)[0]
        server.requests.append(path)
        local = os.path.join(server.root, path.lstrip("/"))  # local: the test's files
        if not os.path.isfile(local):  # local: the test's files
            self.send_error(404)
            return
        with open(local, "rb") as stream:  # local: the test's files
            data = stream.read()
        cut = path in server.truncated
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if cut else data)
        if cut:
            self.close_connection = True

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(root, truncated=()):
    """An HTTP server on 127.0.0.1 serving the files under `root`; yields (base URL, server):
    server.requests lists the paths asked for; paths in `truncated` send half their bytes."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.root = str(root)
    server.requests = []
    server.truncated = set(truncated)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def refused_port():
    """A loopback port that refuses connections at once: bound (so no other server can take
    it meanwhile) but not listening."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]
