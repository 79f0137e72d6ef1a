"""TLS and mutual TLS for Melody's network ports, from certificate files.

This module owns the TLS settings a server port takes (:class:`TlsFiles`: its
certificate chain and key, and with a client CA, mutual TLS: a client must present a
certificate that CA signed or the handshake fails), the flags that set them (the same on
``melody serve`` and ``melody gateway``), and their translation into gRPC server and
channel credentials and into an ``ssl.SSLContext`` for the HTTP ports. TLS is off unless
a certificate is given.
"""

import argparse
import dataclasses
import ssl
from typing import Optional


@dataclasses.dataclass(frozen=True)
class TlsFiles:
  """A server's TLS material (PEM files).

  Attributes:
    cert_file: The server's certificate chain.
    key_file: Its private key.
    client_ca_file: CA certificates client certificates must chain to; set, it turns on
      mutual TLS (clients without a valid certificate are refused).
  """
  cert_file: str
  key_file: str
  client_ca_file: str = ""

  @property
  def mutual(self) -> bool:
    return bool(self.client_ca_file)


def _read(path: str) -> bytes:
  with open(path, "rb") as f:
    return f.read()


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
  """Adds ``--tls-cert``, ``--tls-key`` and ``--tls-client-ca`` to ``parser``."""
  parser.add_argument("--tls-cert", default=None,
                      help="PEM certificate chain: serve gRPC and HTTP over TLS")
  parser.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
  parser.add_argument("--tls-client-ca", default=None,
                      help="PEM CA bundle: require client certificates it signed (mTLS)")


def from_args(args: argparse.Namespace) -> Optional[TlsFiles]:
  """The TLS files the flags name, or None when TLS is off.

  Raises:
    ValueError: a certificate without its key (or the reverse), or a client CA
      without a server certificate.
    OSError: a file cannot be read.
  """
  cert, key, ca = args.tls_cert, args.tls_key, args.tls_client_ca
  if not cert and not key:
    if ca:
      raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
    return None
  if not (cert and key):
    raise ValueError("give --tls-cert and --tls-key together")
  files = TlsFiles(cert, key, ca or "")
  for path in (cert, key, ca):
    if path:
      _read(path)
  return files


def grpc_server_credentials(files: TlsFiles):
  """``grpc.ServerCredentials`` for a server port."""
  import grpc  # pylint: disable=import-outside-toplevel
  return grpc.ssl_server_credentials(
      [(_read(files.key_file), _read(files.cert_file))],
      root_certificates=_read(files.client_ca_file) if files.mutual else None,
      require_client_auth=files.mutual)


def grpc_channel_credentials(ca_file: str, cert_file: str = "", key_file: str = ""):
  """``grpc.ChannelCredentials`` trusting ``ca_file``, with a client certificate if given."""
  import grpc  # pylint: disable=import-outside-toplevel
  return grpc.ssl_channel_credentials(
      root_certificates=_read(ca_file),
      private_key=_read(key_file) if key_file else None,
      certificate_chain=_read(cert_file) if cert_file else None)


def server_ssl_context(files: TlsFiles) -> ssl.SSLContext:
  """An ``ssl.SSLContext`` for an HTTP server port (TLS 1.2 at least)."""
  context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
  context.minimum_version = ssl.TLSVersion.TLSv1_2
  context.load_cert_chain(files.cert_file, files.key_file)
  if files.mutual:
    context.load_verify_locations(files.client_ca_file)
    context.verify_mode = ssl.CERT_REQUIRED
  return context


def wrap_listening_socket(sock, files: Optional[TlsFiles]):
  """``sock`` wrapped for TLS (or unchanged when ``files`` is None).

  The handshake runs on each connection's first read, in its handler thread, so a slow
  or failing client never holds the accept loop.
  """
  if files is None:
    return sock
  return server_ssl_context(files).wrap_socket(sock, server_side=True,
                                               do_handshake_on_connect=False)
