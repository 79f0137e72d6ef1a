"""The request handler base of Melody's HTTP ports (the model server's REST port and the
gateway's HTTP port).

This module owns what those handlers share below their routes: HTTP/1.1 keep-alive with
an idle timeout, writing one answer with its length (and ``Connection: close`` when the
connection must end), a client that hangs up mid-answer or fails its TLS handshake
ending only its own connection, and no per-call log line (counting calls is the
metrics' job).
"""

import http.server
import ssl

IDLE_CONNECTION_SECONDS = 60.0


class BaseHandler(http.server.BaseHTTPRequestHandler):
  """Subclasses add ``do_GET`` / ``do_POST`` and answer through :meth:`_write`."""

  protocol_version = "HTTP/1.1"   # Keep-alive: clients reuse their connection.
  timeout = IDLE_CONNECTION_SECONDS

  def handle(self):
    try:
      super().handle()
    except (ssl.SSLError, ConnectionResetError):   # e.g. a refused TLS handshake
      self.close_connection = True

  def _write(self, status: int, content_type: str, payload: bytes,
             close: bool = False) -> None:
    if close:
      self.close_connection = True
    try:
      self.send_response(status)
      self.send_header("Content-Type", content_type)
      self.send_header("Content-Length", str(len(payload)))
      if close:
        self.send_header("Connection", "close")
      self.end_headers()
      self.wfile.write(payload)
    except (BrokenPipeError, ConnectionResetError):
      self.close_connection = True   # The client left; nobody to answer.

  def log_message(self, *args):  # pylint: disable=arguments-differ
    pass
