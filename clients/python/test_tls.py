"""Tests of client.py over TLS against a real `msglog serve --tls-*`.

Python's standard library cannot make certificates, so a fresh set is
written into a temporary directory by msglog's test helper
`examples/tls_test_certs.rs` (rcgen): the binary `cargo test` built next to
the server's (target/debug/examples/tls_test_certs), else through
`cargo run --example tls_test_certs`. No key is committed.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

import client
from test_client import REPO, WAIT, Server, record, server_binary, unique

CERTS: Path | None = None
_certs_dir: tempfile.TemporaryDirectory[str] | None = None


def make_certificates(into: Path) -> None:
    """Writes ca.pem, server.pem/.key and alice.pem/.key into ``into``."""
    helper = server_binary().parent / "examples" / "tls_test_certs"
    if helper.is_file():
        command = [str(helper), str(into)]
    else:
        command = ["cargo", "run", "--quiet", "--example", "tls_test_certs", "--", str(into)]
    done = subprocess.run(
        command, cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"cannot make the test certificates with {command}: {done.stderr.decode(errors='replace')}"
        )


def setUpModule() -> None:
    global CERTS, _certs_dir
    _certs_dir = tempfile.TemporaryDirectory(prefix="msglog-pytls-")
    CERTS = Path(_certs_dir.name)
    make_certificates(CERTS)


def tearDownModule() -> None:
    if _certs_dir is not None:
        _certs_dir.cleanup()


def cert(name: str) -> str:
    assert CERTS is not None
    return str(CERTS / name)


class TlsTestCase(unittest.TestCase):
    def start(self, *options: str) -> Server:
        server = Server("--tls-cert", cert("server.pem"), "--tls-key", cert("server.key"), *options)
        self.addCleanup(server.stop)
        return server

    def client(self, server: Server, name: str, **kwargs: object) -> client.client:
        kwargs.setdefault("timeout", WAIT)
        c = client.client(
            name,
            "A",
            host="127.0.0.1",
            port=server.port,
            **kwargs,  # type: ignore[arg-type]
        )
        self.addCleanup(c.disconnect)
        return c


class Tls(TlsTestCase):
    def test_messages_travel_inside_tls(self) -> None:
        server = self.start()
        name = unique("tls")
        c = self.client(server, name, tls=True, cafile=cert("ca.pem"))
        c.msg("over TLS")
        c.msg("héllo ✓")
        c.disconnect()
        # By name, as the certificate carries it, too.
        c = self.client(
            server, name, tls=True, cafile=cert("ca.pem"), server_hostname="localhost"
        )
        c.msg("again")
        c.disconnect()
        self.assertEqual(
            server.records(b"[" + name.encode() + b"]: "),
            [record(name, "over TLS"), record(name, "héllo ✓"), record(name, "again")],
        )

    def test_a_server_certificate_from_an_unknown_ca_is_refused(self) -> None:
        server = self.start()
        # The system's CA certificates did not sign the test certificate.
        with self.assertRaisesRegex(client.TlsError, "cafile="):
            self.client(server, unique("untrusted"), tls=True)

    def test_a_plaintext_client_is_told_the_server_wants_tls(self) -> None:
        server = self.start()
        with self.assertRaisesRegex(client.TlsError, "tls=True"):
            self.client(server, unique("plain"))

    def test_a_tls_client_is_told_the_server_has_no_tls(self) -> None:
        server = Server()
        self.addCleanup(server.stop)
        with self.assertRaisesRegex(client.TlsError, "tls=False"):
            self.client(server, unique("no-tls"), tls=True, cafile=cert("ca.pem"))
        # The diagnostic line comes as the server closes; wait for it.
        deadline = time.monotonic() + WAIT
        while b"this looks like a TLS client" not in b"".join(server.stdout):
            self.assertLess(time.monotonic(), deadline, "no diagnostic line")
            time.sleep(0.01)

    def test_mutual_tls_and_names_from_the_certificate(self) -> None:
        server = self.start(
            "--tls-client-ca",
            cert("ca.pem"),
            "--tls-require-client-cert",
            "--tls-name-from-cert",
        )
        mine = {"certfile": cert("alice.pem"), "keyfile": cert("alice.key")}
        c = self.client(server, "alice", tls=True, cafile=cert("ca.pem"), **mine)
        c.msg("certified")
        c.disconnect()
        with self.assertRaises(client.PasswordRejected):
            self.client(server, "mallory", tls=True, cafile=cert("ca.pem"), **mine)
        with self.assertRaisesRegex(client.TlsError, "certfile="):
            self.client(server, "alice", tls=True, cafile=cert("ca.pem"))
        self.assertEqual(server.records(b"[alice]: "), [record("alice", "certified")])
        self.assertEqual(server.records(b"[mallory]: "), [])

    def test_unusable_tls_files_are_an_invalid_argument(self) -> None:
        server = self.start()
        missing = os.path.join(cert(""), "missing.pem")
        with self.assertRaisesRegex(client.InvalidArgument, "cafile"):
            self.client(server, unique("files"), tls=True, cafile=missing)


if __name__ == "__main__":
    unittest.main()
