"""A throwaway certificate authority for tests, made with the ``openssl`` command.

`make_certificates` issues, from a CA made for the purpose, a server certificate for
127.0.0.1 and a client certificate (from a second CA, the one a server requiring client
certificates trusts). Nothing here is trusted by the system store.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_CA_EXTENSIONS = ["-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign"]  # fmt: skip
_LEAF = """basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage={usage}
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
"""


@dataclass(frozen=True)
class Certificates:
    ca: Path  # issued the server certificate
    server_cert: Path
    server_key: Path
    client_ca: Path  # issued the client certificate
    client_cert: Path
    client_key: Path


def openssl() -> str:
    found = shutil.which("openssl")
    if found is None:  # scripts/test installs it: a missing one is a failure, not a skip
        raise RuntimeError("the openssl command is needed to make test certificates")
    return found


def _run(*args: str) -> None:
    subprocess.run([openssl(), *args], check=True, capture_output=True, timeout=60)


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _run("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "7",
         "-subj", f"/CN=hostfit test {name}", *_CA_EXTENSIONS)  # fmt: skip
    return cert, key


def _leaf(
    directory: Path, name: str, ca: tuple[Path, Path], usage: str, alt: str | None
) -> tuple[Path, Path]:
    cert, key, csr = (directory / f"{name}.{ext}" for ext in ("pem", "key", "csr"))
    extensions = directory / f"{name}.ext"
    extensions.write_text(_LEAF.format(usage=usage) + (f"subjectAltName={alt}\n" if alt else ""))
    _run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")  # fmt: skip
    _run("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
         "-set_serial", f"0x{secrets.token_hex(8)}", "-days", "7", "-out", str(cert),
         "-extfile", str(extensions))  # fmt: skip
    return cert, key


def make_certificates(directory: Path) -> Certificates:
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca(directory, "ca")
    client_ca = _ca(directory, "client-ca")
    server = _leaf(directory, "127.0.0.1", ca, "serverAuth", "IP:127.0.0.1")
    client = _leaf(directory, "hostfit", client_ca, "clientAuth", None)
    return Certificates(ca[0], server[0], server[1], client_ca[0], client[0], client[1])
