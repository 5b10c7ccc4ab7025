"""Tests of client.py against a real `msglog serve` that this module starts.

Run from the repository root:

    python3 -m unittest discover -s clients/python -v

The server binary is $MSGLOG_BIN, else $CARGO_TARGET_DIR/debug/msglog, else
target/debug/msglog (build it with `cargo build`). It listens on a free
port on 127.0.0.1 and logs to a file in a temporary directory; the tests read
that file to check the records.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path
from unittest import mock

HERE = Path(__file__).resolve().parent
# So that `import client` finds this directory's module from any working
# directory, as `unittest discover -s` does.
sys.path.insert(0, str(HERE))

import client  # noqa: E402

REPO = HERE.parent.parent
# Every wait in this module is bounded by this many seconds.
WAIT = 20.0


def server_binary() -> Path:
    """The `msglog` binary under test."""
    explicit = os.environ.get("MSGLOG_BIN")
    if explicit:
        return Path(explicit)
    target = os.environ.get("CARGO_TARGET_DIR")
    return (Path(target) if target else REPO / "target") / "debug" / "msglog"


class Server:
    """A `msglog serve` process on 127.0.0.1, a free port, and a temp log."""

    def __init__(self, *options: str) -> None:
        """Starts the server with ``options`` added to its command line."""
        binary = server_binary()
        if not binary.is_file():
            raise RuntimeError(
                f"no msglog binary at {binary}: run `cargo build` first, or set "
                "MSGLOG_BIN to the binary"
            )
        self._dir = tempfile.TemporaryDirectory(prefix="msglog-pytest-")
        self.log = Path(self._dir.name) / "messages.log"
        self._stderr = open(Path(self._dir.name) / "stderr.txt", "w+b")
        self._proc = subprocess.Popen(
            [str(binary), "serve", "--bind", "127.0.0.1", "--log", str(self.log), *options, "0"],
            cwd=self._dir.name,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            # The server reads MSGLOG_* settings (port, limits, fsync) from
            # its environment: leave them out so the tests are the same
            # wherever they run.
            env={k: v for k, v in os.environ.items() if not k.startswith("MSGLOG_")},
        )
        self.stdout: list[bytes] = []
        lines: queue.Queue[bytes] = queue.Queue()
        # The server logs diagnostics to stdout; draining them keeps it from
        # blocking on a full pipe.
        self._drain = threading.Thread(target=self._read_stdout, args=(lines,), daemon=True)
        self._drain.start()
        try:
            first = lines.get(timeout=WAIT)
        except queue.Empty:
            first = b""
        match = re.search(rb":(\d+),", first)
        if not match:
            stderr = self.stderr()
            self.stop()
            raise RuntimeError(
                f"msglog serve did not name its address; first line {first!r}, "
                f"exit status {self._proc.returncode}, stderr {stderr!r}"
            )
        self.port = int(match.group(1))

    def _read_stdout(self, lines: queue.Queue[bytes]) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self.stdout.append(line)
            lines.put(line)
        lines.put(b"")  # end of output: startup waits no longer

    def stderr(self) -> bytes:
        self._stderr.seek(0)
        return self._stderr.read()

    def records(self, prefix: bytes) -> list[bytes]:
        """The records (with their CR LF) of the log that start with ``prefix``.

        Also checks the whole log: valid UTF-8, whole records only (a message
        is acknowledged only after its record was written).
        """
        data = self.log.read_bytes() if self.log.exists() else b""
        data.decode("utf-8")  # raises if the log is not valid UTF-8
        if data and not data.endswith(b"\r\n"):
            raise AssertionError(f"log ends in a partial record: {data[-80:]!r}")
        lines = [line + b"\r\n" for line in data.split(b"\r\n")[:-1]]
        for line in lines:
            if b"\r" in line[:-2] or b"\n" in line[:-2]:
                raise AssertionError(f"record spans lines: {line!r}")
        return [line for line in lines if line.startswith(prefix)]

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=WAIT)
        self._drain.join(timeout=WAIT)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._stderr.close()
        self._dir.cleanup()


SERVER: Server | None = None


def setUpModule() -> None:
    global SERVER
    SERVER = Server()


def tearDownModule() -> None:
    if SERVER is not None:
        SERVER.stop()


_counter = itertools.count(1)


def unique(label: str) -> str:
    """A name no other test uses, so each test finds its own records."""
    return f"{label}-{next(_counter)}"


def record(name: str | bytes, message: str | bytes) -> bytes:
    """The record the server writes for text that needs no escaping."""
    n = name.encode() if isinstance(name, str) else name
    m = message.encode() if isinstance(message, str) else message
    return b"[" + n + b"]: " + m + b"\r\n"


class ServerTestCase(unittest.TestCase):
    server: Server

    def setUp(self) -> None:
        assert SERVER is not None
        self.server = SERVER

    def client(
        self, name: client.Payload, password: client.Payload = "A", **kwargs: object
    ) -> client.client:
        """A client of the test server, disconnected when the test ends."""
        kwargs.setdefault("timeout", WAIT)
        c = client.client(
            name,
            password,
            host="127.0.0.1",
            port=self.server.port,
            **kwargs,  # type: ignore[arg-type]
        )
        self.addCleanup(c.disconnect)
        return c

    def records(self, name: str | bytes) -> list[bytes]:
        """The records under ``name`` (a name that needs no escaping)."""
        n = name.encode() if isinstance(name, str) else name
        return self.server.records(b"[" + n + b"]: ")


class OriginalSuite(ServerTestCase):
    """The six behaviours of the original client's unit tests."""

    def test_connect(self) -> None:
        name = unique("MyTestCase")
        c = self.client(name)
        self.assertTrue(c.connected)
        c.disconnect()
        self.assertFalse(c.connected)
        self.assertEqual(self.records(name), [])

    def test_one_message(self) -> None:
        name = unique("MyTestCase")
        c = self.client(name)
        c.msg("Hello!")
        self.assertEqual(self.records(name), [record(name, "Hello!")])

    def test_two_messages(self) -> None:
        name = unique("MyTestCase")
        c = self.client(name)
        c.msg("Hello!")
        c.msg("Hello again!")
        self.assertEqual(self.records(name), [record(name, "Hello!"), record(name, "Hello again!")])

    def test_bad_password(self) -> None:
        name = unique("MyTestCase")
        for password in ("B", "BAAA"):
            with self.subTest(password=password):
                with self.assertRaises(client.ClientError) as caught:
                    self.client(name, password)
                self.assertIsInstance(caught.exception, client.PasswordRejected)

    def test_reconnect(self) -> None:
        name = unique("MyTestCase")
        c = self.client(name)
        c.disconnect()
        c.connect()
        c.msg("Hello after reconnecting!")
        self.assertEqual(self.records(name), [record(name, "Hello after reconnecting!")])

    def test_threads(self) -> None:
        names = [unique(f"Thread{i}") for i in range(10)]
        errors: list[BaseException] = []

        def run(name: str) -> None:
            try:
                with client.client(name, "A", "127.0.0.1", self.server.port, timeout=WAIT) as c:
                    c.msg(f"Hello from {name}!")
            except BaseException as e:  # reported by the main thread
                errors.append(e)

        threads = [threading.Thread(target=run, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=WAIT)
        self.assertFalse(any(t.is_alive() for t in threads), "a client thread hung")
        self.assertEqual(errors, [])
        for name in names:
            self.assertEqual(self.records(name), [record(name, f"Hello from {name}!")])


class DropInSurface(ServerTestCase):
    """What code written for the original client relies on, its own unit
    tests among it: the ``_connected`` flag, ``disconnect()`` on any client,
    changing the name or password and connecting again, ``ClientError`` for a
    rejected password, clients in threads that find the server by default."""

    def assert_session(self, c: client.client, open_: bool) -> None:
        self.assertIs(c._connected, open_)
        self.assertIs(c.connected, open_)

    def test_connected_follows_the_session(self) -> None:
        c = self.client(unique("Flag"), defer=True)
        self.assert_session(c, False)
        c.connect()
        self.assert_session(c, True)
        c.disconnect()
        self.assert_session(c, False)
        c.connect()
        self.assert_session(c, True)

    def test_connected_is_false_after_a_rejected_password(self) -> None:
        c = self.client(unique("Refused"), "B", defer=True)
        with self.assertRaises(client.ClientError):
            c.connect()
        self.assert_session(c, False)

    def test_connected_is_false_after_a_rejected_message(self) -> None:
        c = self.client(unique("EmptyMsg"))
        with self.assertRaises(client.ClientError):
            c.msg("")
        self.assert_session(c, False)

    def test_disconnect_without_a_session_does_nothing(self) -> None:
        never = self.client(unique("Never"), defer=True)
        never.disconnect()
        never.disconnect()
        self.assert_session(never, False)
        failed = self.client(unique("Failed"), "B", defer=True)
        with self.assertRaises(client.ClientError):
            failed.connect()
        failed.disconnect()
        failed.disconnect()
        self.assert_session(failed, False)
        unreachable = client.client(
            unique("Unreachable"), "A", "127.0.0.1", closed_port(), defer=True
        )
        with self.assertRaises(client.ClientError):
            unreachable.connect()
        unreachable.disconnect()
        self.assert_session(unreachable, False)

    def test_password_changed_then_connect(self) -> None:
        name = unique("Password")
        c = self.client(name, defer=True)
        c.password = "B"
        with self.assertRaises(client.ClientError) as caught:
            c.connect()
        self.assertIsInstance(caught.exception, client.PasswordRejected)
        self.assert_session(c, False)
        c.password = "A"
        c.connect()
        self.assert_session(c, True)
        c.msg("with the new password")
        self.assertEqual(self.records(name), [record(name, "with the new password")])

    def test_name_changed_then_connect(self) -> None:
        first, second = unique("Before"), unique("After")
        c = self.client(first, defer=True)
        c.connect()
        c.disconnect()
        c.name = second
        c.connect()
        self.assert_session(c, True)
        c.msg("under the new name")
        self.assertEqual(self.records(first), [])
        self.assertEqual(self.records(second), [record(second, "under the new name")])

    def test_clients_in_threads_with_default_host_and_port(self) -> None:
        # As the original tests do: each thread makes a client with only a
        # name and password, sends one message and disconnects; the
        # environment points the defaults at the test server.
        names = [unique(f"Default{i}") for i in range(10)]
        seen: dict[str, tuple[bool, bool]] = {}
        errors: list[BaseException] = []

        def run(name: str) -> None:
            try:
                c = client.client(name, "A")
                during = c._connected
                c.msg(f"{name} was here")
                c.disconnect()
                seen[name] = (during, c._connected)
            except BaseException as e:  # reported by the main thread
                errors.append(e)

        env = {"MSGLOG_HOST": "127.0.0.1", "MSGLOG_PORT": str(self.server.port)}
        with mock.patch.dict(os.environ, env):
            threads = [threading.Thread(target=run, args=(n,)) for n in names]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=WAIT)
        self.assertFalse(any(t.is_alive() for t in threads), "a client thread hung")
        self.assertEqual(errors, [])
        self.assertEqual(seen, {n: (True, False) for n in names})
        for n in names:
            self.assertEqual(self.records(n), [record(n, f"{n} was here")])


class Sessions(ServerTestCase):
    def test_rename_then_connect(self) -> None:
        first, second = unique("MyUser"), unique("MyOtherUser")
        c = self.client(first)
        c.msg("as the first user")
        c.disconnect()
        c.name = second
        c.connect()
        c.msg("as the second user")
        self.assertEqual(self.records(first), [record(first, "as the first user")])
        self.assertEqual(self.records(second), [record(second, "as the second user")])

    def test_connect_while_connected_starts_a_new_session(self) -> None:
        first, second = unique("Before"), unique("After")
        c = self.client(first)
        c.name = second
        c.connect()  # closes the first session
        c.msg("renamed")
        self.assertEqual(self.records(first), [])
        self.assertEqual(self.records(second), [record(second, "renamed")])

    def test_deferred_connect(self) -> None:
        name = unique("Deferred")
        c = self.client(name, defer=True)
        self.assertFalse(c.connected)
        with self.assertRaises(client.NotConnected):
            c.msg("too early")
        c.connect()
        c.msg("in time")
        self.assertEqual(self.records(name), [record(name, "in time")])

    def test_disconnect_twice_is_safe(self) -> None:
        c = self.client(unique("Twice"))
        c.disconnect()
        c.disconnect()
        self.assertFalse(c.connected)
        with self.assertRaises(client.NotConnected):
            c.msg("after disconnect")

    def test_context_manager(self) -> None:
        name = unique("With")
        with client.client(name, "A", "127.0.0.1", self.server.port, timeout=WAIT) as c:
            self.assertTrue(c.connected)
            c.msg("inside")
        self.assertFalse(c.connected)
        self.assertEqual(self.records(name), [record(name, "inside")])

    def test_context_manager_connects_a_deferred_client(self) -> None:
        name = unique("WithDeferred")
        c = self.client(name, defer=True)
        with c:
            c.msg("deferred inside")
        self.assertFalse(c.connected)
        self.assertEqual(self.records(name), [record(name, "deferred inside")])

    def test_context_manager_keeps_the_callers_exception(self) -> None:
        c = self.client(unique("Raises"))

        class Boom(Exception):
            pass

        with self.assertRaises(Boom), c:
            raise Boom
        self.assertFalse(c.connected)

    def test_one_client_shared_by_threads(self) -> None:
        name = unique("Shared")
        c = self.client(name)
        errors: list[BaseException] = []

        def run(i: int) -> None:
            try:
                for j in range(5):
                    c.msg(f"thread {i} message {j}")
            except BaseException as e:  # reported by the main thread
                errors.append(e)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=WAIT)
        self.assertFalse(any(t.is_alive() for t in threads), "a client thread hung")
        self.assertEqual(errors, [])
        expected = [record(name, f"thread {i} message {j}") for i in range(4) for j in range(5)]
        self.assertEqual(sorted(self.records(name)), sorted(expected))

    def test_many_clients_at_once(self) -> None:
        names = [unique(f"Many{i}") for i in range(20)]
        clients = [self.client(n) for n in names]
        for c, n in zip(clients, names, strict=True):
            c.msg(f"{n} says hi")
        for n in names:
            self.assertEqual(self.records(n), [record(n, f"{n} says hi")])


class Encoding(ServerTestCase):
    def test_non_ascii_name_and_message(self) -> None:
        name = unique("Zoë-名前-🎉")
        message = "héllo wörld — ✓ 日本語 🎉"
        c = self.client(name)
        c.msg(message)
        # Lengths count bytes: a second message would be garbled if the
        # first one's length had counted characters.
        c.msg("and then ASCII")
        self.assertEqual(
            self.records(name), [record(name, message), record(name, "and then ASCII")]
        )

    def test_bytes_and_str_are_the_same_text(self) -> None:
        name = unique("Ünïcode")
        c = self.client(name.encode(), b"A")
        c.msg("ça va".encode())
        c.msg(bytearray("ça va", "utf-8"))
        c.msg(memoryview("ça va".encode()))
        self.assertEqual(self.records(name), [record(name, "ça va")] * 3)

    def test_password_checked_by_its_first_byte(self) -> None:
        # "ñ" is C3 B1 in UTF-8 (first byte odd), "Ā" is C4 80 (even).
        self.assertTrue(self.client(unique("PwOdd"), "ñ").connected)
        with self.assertRaises(client.PasswordRejected):
            self.client(unique("PwEven"), "Ā")

    def test_binary_message(self) -> None:
        name = unique("Binary")
        c = self.client(name)
        c.msg(bytes(range(256)))
        # Control bytes become control pictures, DEL becomes ␡, and bytes
        # that are not valid UTF-8 become ␦ and two hex digits.
        escaped = (
            "".join(chr(0x2400 + b) for b in range(0x20))
            + bytes(range(0x20, 0x7F)).decode("ascii")
            + "\u2421"
            + "".join(f"\u2426{b:02X}" for b in range(0x80, 0x100))
        )
        self.assertEqual(self.records(name), [record(name, escaped)])

    def test_records_cannot_be_forged(self) -> None:
        name = unique("Forger")
        c = self.client(name)
        c.msg("hi\r\n[admin]: forged")
        self.assertEqual(self.records(name), [record(name, "hi␍␊[admin]: forged")])
        self.assertEqual(self.server.records(b"[admin]"), [])

    def test_escaped_name_and_message(self) -> None:
        token = unique("Esc")
        name = f"{token}]x\ty"
        c = self.client(name)
        c.msg("tab\there, NUL\0, line\u2028separator, bad ".encode("utf-8") + b"\xff")
        self.assertEqual(
            self.server.records(f"[{token}␦5Dx␉y]: ".encode()),
            [f"[{token}␦5Dx␉y]: tab␉here, NUL␀, line␦E2␦80␦A8separator, bad ␦FF\r\n".encode()],
        )

    def test_name_rejected(self) -> None:
        for name in ("", b"", b"\0after NUL"):
            with self.subTest(name=name):
                with self.assertRaises(client.NameRejected) as caught:
                    self.client(name)
                self.assertIsInstance(caught.exception, client.ClientError)


class Errors(ServerTestCase):
    def test_rejected_message(self) -> None:
        name = unique("Empty")
        c = self.client(name)
        c.msg("before")
        with self.assertRaises(client.MessageRejected) as caught:
            c.msg("")
        self.assertIsInstance(caught.exception, client.ClientError)
        # The server closes after 0xFF; the client says so instead of
        # pretending to send.
        self.assertFalse(c.connected)
        with self.assertRaises(client.NotConnected):
            c.msg("after")
        c.connect()
        c.msg("after reconnecting")
        self.assertEqual(
            self.records(name), [record(name, "before"), record(name, "after reconnecting")]
        )

    def test_too_long_message_raises_before_sending(self) -> None:
        name = unique("Long")
        c = self.client(name)
        with self.assertRaises(client.MessageTooLong) as caught:
            c.msg(b"x" * (client.MAX_PAYLOAD_LEN + 1))
        self.assertIsInstance(caught.exception, client.ClientError)
        self.assertEqual(caught.exception.length, 65536)
        # 21,846 characters but 65,538 bytes: the limit counts bytes.
        with self.assertRaises(client.MessageTooLong):
            c.msg("€" * 21846)
        # Nothing was sent: the session is intact and the next message is
        # the only record.
        self.assertTrue(c.connected)
        c.msg("after")
        self.assertEqual(self.records(name), [record(name, "after")])

    def test_longest_message(self) -> None:
        name = unique("Longest")
        c = self.client(name)
        c.msg(b"y" * client.MAX_PAYLOAD_LEN)
        self.assertEqual(self.records(name), [record(name, b"y" * 65535)])

    def test_too_long_name_and_password(self) -> None:
        c = self.client(b"n" * 65536, defer=True)
        with self.assertRaises(client.TooLong):
            c.connect()
        self.assertFalse(c.connected)
        c.name = unique("LongPassword")
        c.password = "A" * 65536
        with self.assertRaises(client.TooLong):
            c.connect()
        self.assertFalse(c.connected)

    def test_invalid_arguments(self) -> None:
        c = self.client(unique("Invalid"))
        for message in (42, None, "lone surrogate \ud800"):
            with self.subTest(message=message):
                with self.assertRaises(client.InvalidArgument):
                    c.msg(message)  # type: ignore[arg-type]
        self.assertTrue(c.connected)
        d = self.client(unique("Invalid"), defer=True, timeout=0)
        with self.assertRaises(client.InvalidArgument):
            d.connect()
        d.timeout = WAIT
        d.port = 70000
        with self.assertRaises(client.InvalidArgument):
            d.connect()

    def test_environment_sets_defaults(self) -> None:
        name = unique("FromEnv")
        env = {"MSGLOG_HOST": "127.0.0.1", "MSGLOG_PORT": str(self.server.port)}
        with mock.patch.dict(os.environ, env), client.client(name, "A", timeout=WAIT) as c:
            c.msg("found by environment")
        self.assertEqual(self.records(name), [record(name, "found by environment")])
        with (
            mock.patch.dict(os.environ, {"MSGLOG_PORT": "not-a-port"}),
            self.assertRaises(client.InvalidArgument),
        ):
            client.client(name, "A", defer=True)
        with mock.patch.dict(os.environ, {"MSGLOG_HOST": "", "MSGLOG_PORT": ""}):
            c = client.client(name, "A", defer=True)
            self.assertEqual((c.host, c.port), ("localhost", 5555))


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (just released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Peer:
    """A TCP peer on 127.0.0.1 for failures a well-behaved server never shows.

    ``mode`` "silent": accepts and never replies; "hangup": accepts, then
    closes; "record": acknowledges every frame with 0x00 and keeps the
    bytes it received.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.received = bytearray()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(WAIT)
        self.port = self._listener.getsockname()[1]
        self._conn: socket.socket | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        self._conn = conn
        conn.settimeout(WAIT)
        if self.mode == "hangup":
            conn.close()
        elif self.mode == "record":
            self._acknowledge(conn)

    def _read(self, conn: socket.socket, n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        self.received += data
        return data

    def _acknowledge(self, conn: socket.socket) -> None:
        with conn:
            while (tag := self._read(conn, 1)) is not None:
                if tag != b"\x04":
                    header = self._read(conn, 2)
                    if header is None or self._read(conn, struct.unpack("<H", header)[0]) is None:
                        return
                conn.sendall(b"\x00")

    def close(self) -> None:
        """Stops accepting, waits for the connection to end, then closes it."""
        # Wakes a pending accept() (close() alone does not on Linux); fails
        # harmlessly when there is nothing to wake.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=WAIT)
        self._listener.close()
        if self._conn is not None:
            self._conn.close()


class Failures(unittest.TestCase):
    def peer(self, mode: str) -> Peer:
        p = Peer(mode)
        self.addCleanup(p.close)
        return p

    def test_connect_refused(self) -> None:
        with self.assertRaises(client.ConnectFailed) as caught:
            client.client("n", "A", "127.0.0.1", closed_port(), timeout=WAIT)
        self.assertIsInstance(caught.exception, client.ClientError)

    def test_timeout(self) -> None:
        peer = self.peer("silent")
        started = time.monotonic()
        with self.assertRaises(client.Timeout) as caught:
            client.client("n", "A", "127.0.0.1", peer.port, timeout=0.3)
        self.assertLess(time.monotonic() - started, WAIT / 2)
        self.assertIsInstance(caught.exception, client.ClientError)

    def test_connection_closed(self) -> None:
        peer = self.peer("hangup")
        with self.assertRaises(client.ConnectionClosed) as caught:
            client.client("n", "A", "127.0.0.1", peer.port, timeout=WAIT)
        self.assertIsInstance(caught.exception, client.ClientError)

    def test_bytes_on_the_wire(self) -> None:
        peer = self.peer("record")
        with client.client("Zoë", b"\x01", "127.0.0.1", peer.port, timeout=WAIT) as c:
            c.msg("€")
        peer.close()
        self.assertEqual(
            bytes(peer.received),
            b"\x01\x04\x00Zo\xc3\xab"  # NAME, 4 bytes (3 characters)
            + b"\x02\x01\x00\x01"  # PASS
            + b"\x03\x03\x00\xe2\x82\xac"  # MSG, 3 bytes (1 character)
            + b"\x04",  # CLOSE: one byte, no length
        )


if __name__ == "__main__":
    unittest.main()
