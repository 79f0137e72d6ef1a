"""Certificates the TLS tests make for themselves: a CA, a server and client certificates.

This module owns writing PEM files for TLS and mutual TLS tests with the
``cryptography`` package: a self-signed CA, a server certificate for ``localhost`` and
``127.0.0.1`` signed by it, and client certificates signed by it or by another CA (a
client the server must refuse). Keys are EC P-256, certificates valid for a day.
"""

import dataclasses
import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclasses.dataclass(frozen=True)
class Pair:
  """PEM files of one certificate and its key."""
  cert: str
  key: str


def _name(common_name: str) -> x509.Name:
  return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(directory: str, stem: str, cert: x509.Certificate, key) -> Pair:
  pair = Pair(os.path.join(directory, f"{stem}.crt"), os.path.join(directory, f"{stem}.key"))
  with open(pair.cert, "wb") as f:
    f.write(cert.public_bytes(serialization.Encoding.PEM))
  with open(pair.key, "wb") as f:
    f.write(key.private_bytes(serialization.Encoding.PEM,
                              serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))
  return pair


class Authority:
  """A CA writing its certificate and the ones it signs into ``directory``."""

  def __init__(self, directory: str, name: str = "melody-test-ca"):
    self.directory = directory
    self.name = name
    self._key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    self._cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
                  .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
                  .not_valid_before(now - datetime.timedelta(hours=1))
                  .not_valid_after(now + datetime.timedelta(days=1))
                  .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                  .sign(self._key, hashes.SHA256()))
    self.ca = _write(directory, name, self._cert, self._key)

  def issue(self, stem: str, server: bool) -> Pair:
    """A leaf certificate: a server's (for localhost/127.0.0.1) or a client's."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    usage = x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server else \
        x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (x509.CertificateBuilder().subject_name(_name(stem))
               .issuer_name(self._cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
               .add_extension(x509.ExtendedKeyUsage([usage]), False))
    if server:
      builder = builder.add_extension(x509.SubjectAlternativeName([
          x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                      False)
    return _write(self.directory, stem, builder.sign(self._key, hashes.SHA256()), key)
