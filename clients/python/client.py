"""A client for msglog servers: a drop-in replacement for the original client.

The API is the original one::

    import client

    c = client.client("MyUser", "MyPassword")   # connects, sends NAME and PASS
    c.msg("This is my message.")                # returns once it is logged
    c.disconnect()                              # sends CLOSE, reads the 0x00
    c.name = "MyOtherUser"
    c.connect()                                 # a new session, new name

and, new here, a context manager::

    with client.client("MyUser", "A") as c:
        c.msg("héllo")                          # str is sent as UTF-8
        c.msg(b"\\x00\\x01 binary")              # bytes are sent as they are

and, also new, TLS (the server runs with ``--tls-cert``/``--tls-key``)::

    c = client.client("MyUser", "A", tls=True, cafile="ca.pem")
    c = client.client("alice", "A", tls=True, cafile="ca.pem",
                      certfile="alice.pem", keyfile="alice.key")   # mutual TLS

Unlike the original client, it counts lengths in encoded bytes, accepts
``str`` (sent as UTF-8) or ``bytes`` for names, passwords and messages,
raises a :class:`ClientError` for every failure (never swallows one), refuses
a payload over 65,535 bytes before sending anything, and has timeouts.

Wire format (spec/protocol.md): a frame is a tag byte (1 NAME, 2 PASS,
3 MSG), a little-endian u16 payload length, and the payload; CLOSE is the
single byte 0x04. The server answers every frame with one byte: 0x00
accepted, 0xFF rejected (and then it closes the connection).

Standard library only; Python 3.11 or newer.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import struct
import threading
from types import TracebackType
from typing import Final, TypeAlias

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_TIMEOUT",
    "MAX_PAYLOAD_LEN",
    "Client",
    "ClientError",
    "ConnectFailed",
    "ConnectionClosed",
    "InvalidArgument",
    "MessageRejected",
    "MessageTooLong",
    "NameRejected",
    "NotConnected",
    "PasswordRejected",
    "ProtocolError",
    "Rejected",
    "Timeout",
    "TlsError",
    "TooLong",
    "client",
]

#: Host used when neither the ``host`` argument nor ``MSGLOG_HOST`` is given.
DEFAULT_HOST: Final = "localhost"
#: Port used when neither the ``port`` argument nor ``MSGLOG_PORT`` is given.
DEFAULT_PORT: Final = 5555
#: Seconds to wait for the TCP connection and for each reply byte.
DEFAULT_TIMEOUT: Final = 30.0
#: The largest payload a frame can carry: its length field is a u16.
MAX_PAYLOAD_LEN: Final = 0xFFFF

TAG_NAME: Final = 1
TAG_PASS: Final = 2
TAG_MSG: Final = 3
#: CLOSE is one byte: no length field, no payload.
CLOSE_FRAME: Final = b"\x04"
REPLY_ACK: Final = 0x00
REPLY_REJECT: Final = 0xFF
#: The first byte of a TLS alert record: what a TLS server answers a client
#: without TLS with; no msglog reply starts so.
TLS_ALERT_RECORD: Final = 0x15

#: What names, passwords and messages may be: ``str`` is sent as UTF-8.
Payload: TypeAlias = str | bytes | bytearray | memoryview


class ClientError(Exception):
    """Base class of every error this client raises."""


class InvalidArgument(ClientError, ValueError):
    """A name, password, message, host or port that cannot be sent as given.

    Raised before anything is sent.
    """


class TooLong(InvalidArgument):
    """A payload longer than 65,535 encoded bytes; nothing was sent."""

    def __init__(self, field: str, length: int) -> None:
        self.field = field
        self.length = length
        super().__init__(
            f"the {field} is {length} bytes long, over the protocol's limit of "
            f"{MAX_PAYLOAD_LEN} bytes; nothing was sent: shorten it or split it"
        )


class MessageTooLong(TooLong):
    """A message longer than 65,535 encoded bytes; nothing was sent.

    The session stays open and usable.
    """

    def __init__(self, length: int) -> None:
        super().__init__("message", length)


class ConnectFailed(ClientError):
    """The TCP connection to the server could not be opened."""


class TlsError(ConnectFailed):
    """TLS failed: the certificates did not verify, or only one side speaks TLS.

    The message says which, and what to change.
    """


class NotConnected(ClientError):
    """``msg()`` was called without an open session."""


class Rejected(ClientError):
    """The server answered 0xFF: it refused a frame and closed the connection."""

    #: What the server's rules ask for, said in the error message.
    hint = "see the server's diagnostics for the rule that was broken"


class NameRejected(Rejected):
    """The server refused the name (for example: empty, or starting with NUL)."""

    hint = (
        "a name must not be empty nor start with a NUL byte; a server at its "
        "connection limit also answers 0xFF"
    )


class PasswordRejected(Rejected):
    """The server refused the password (for example: its first byte is even)."""

    hint = 'the first byte of the password must be odd ("A" is accepted, "B" is not)'


class MessageRejected(Rejected):
    """The server refused a message (for example: empty); it was not logged."""

    hint = "a message must not be empty, nor longer than the server's configured limit"


class ConnectionClosed(ClientError):
    """The server closed or reset the connection before it replied."""


class Timeout(ClientError):
    """No connection or no reply within the client's timeout.

    The session is closed: a message that timed out may or may not have been
    logged.
    """


class ProtocolError(ClientError):
    """The server replied with a byte that is neither 0x00 nor 0xFF."""


def _encode(field: str, value: object) -> bytes:
    """The bytes of a name, password or message, checked against the limit."""
    if isinstance(value, str):
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InvalidArgument(
                f"the {field} is not valid Unicode text ({e.reason} at index "
                f"{e.start}): pass valid text, or bytes"
            ) from e
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    else:
        raise InvalidArgument(f"the {field} must be str or bytes, not {type(value).__name__}")
    if len(data) > MAX_PAYLOAD_LEN:
        if field == "message":
            raise MessageTooLong(len(data))
        raise TooLong(field, len(data))
    return data


def _frame(tag: int, payload: bytes) -> bytes:
    """One frame: tag, little-endian u16 length in bytes, payload."""
    return struct.pack("<BH", tag, len(payload)) + payload


def _default_host() -> str:
    return os.environ.get("MSGLOG_HOST") or DEFAULT_HOST


def _default_port() -> int:
    value = os.environ.get("MSGLOG_PORT")
    if not value:
        return DEFAULT_PORT
    return _check_port(value, "MSGLOG_PORT")


def _check_port(value: object, source: str) -> int:
    try:
        port: int = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError) as e:
        raise InvalidArgument(f"{source} is {value!r}, not a port number: use 1 to 65535") from e
    if not 1 <= port <= 65535:
        raise InvalidArgument(f"{source} is {port}, outside 1 to 65535")
    return port


def _check_timeout(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidArgument(
            f"the timeout is {value!r}: use a number of seconds above 0, or None to wait forever"
        )
    return float(value)


class client:  # noqa: N801 - the original API's class name, kept for drop-in use
    """One client of a msglog server; each holds at most one session.

    ``client(name, password)`` connects at once and sends NAME and PASS,
    unless ``defer=True``; then :meth:`connect` does it. Any number of
    clients may exist at once, each with its own connection. One client may
    be shared between threads: its calls take turns.

    ``host`` and ``port`` default to the environment variables
    ``MSGLOG_HOST`` and ``MSGLOG_PORT`` when they are set, else to
    ``localhost`` and 5555. ``timeout`` (seconds, ``None`` to wait forever)
    bounds opening the connection and waiting for each reply.

    With ``tls=True`` the session runs inside TLS 1.2 or 1.3 and the server's
    certificate is verified against ``cafile`` (PEM; default: the system's
    CA certificates) for the name ``server_hostname`` (default: ``host``).
    ``certfile`` and ``keyfile`` (PEM) present a client certificate, for a
    server that asks for one (mutual TLS).

    The attributes ``name``, ``password``, ``host``, ``port`` and
    ``timeout`` may be changed; the change applies at the next
    :meth:`connect`.

    Raises :class:`ClientError` (a subclass of it) when connecting fails,
    as :meth:`connect` does.
    """

    def __init__(
        self,
        name: Payload,
        password: Payload,
        host: str | None = None,
        port: int | None = None,
        defer: bool = False,
        timeout: float | None = DEFAULT_TIMEOUT,
        *,
        tls: bool = False,
        cafile: str | os.PathLike[str] | None = None,
        certfile: str | os.PathLike[str] | None = None,
        keyfile: str | os.PathLike[str] | None = None,
        server_hostname: str | None = None,
    ) -> None:
        self.name: Payload = name
        self.password: Payload = password
        self.host: str = _default_host() if host is None else host
        self.port: int = _default_port() if port is None else port
        self.timeout: float | None = timeout
        self.tls = tls
        self.cafile = cafile
        self.certfile = certfile
        self.keyfile = keyfile
        self.server_hostname = server_hostname
        self._sock: socket.socket | None = None
        # Serialises the transactions of threads sharing this client: a reply
        # must be read by the thread that sent its frame.
        self._lock = threading.Lock()
        if not defer:
            self.connect()

    @property
    def connected(self) -> bool:
        """Whether a session is open (NAME and PASS were accepted)."""
        return self._sock is not None

    @property
    def _connected(self) -> bool:
        """Same as :attr:`connected`, read-only: the original client's name for
        it, which code written for that client (its own tests among it) reads."""
        return self.connected

    def connect(self) -> None:
        """Opens a session: connects, then sends NAME and PASS.

        A session that is already open is closed first (with CLOSE), so that
        setting ``name`` and calling ``connect()`` starts a session under the
        new name; if that CLOSE fails, the old connection is dropped and the
        new session opened all the same.

        Raises:
            InvalidArgument: name, password, port or timeout unusable (TooLong
                for a name or password over 65,535 bytes); nothing was sent.
            ConnectFailed: the server could not be reached.
            NameRejected, PasswordRejected: the server refused them.
            ConnectionClosed, Timeout, ProtocolError: the connection failed.
        """
        with self._lock:
            name = _encode("name", self.name)
            password = _encode("password", self.password)
            port = _check_port(self.port, "the port")
            if not isinstance(self.host, str):
                raise InvalidArgument(f"the host must be str, not {type(self.host).__name__}")
            timeout = _check_timeout(self.timeout)
            # Unusable TLS files fail here, before any traffic.
            context = self._tls_context() if self.tls else None
            # The old session is gone either way (its socket is closed); a
            # failed goodbye must not stop the new session, which is how a
            # caller recovers from a broken one.
            with contextlib.suppress(ClientError):
                self._disconnect_locked()
            try:
                sock = socket.create_connection((self.host, port), timeout=timeout)
            except TimeoutError as e:
                raise Timeout(
                    f"no connection to {self.host}:{port} within {self.timeout} s: "
                    "check that the server is up and reachable, or raise the timeout"
                ) from e
            except OSError as e:
                raise ConnectFailed(
                    f"cannot connect to {self.host}:{port}: {e.strerror or e}; "
                    "check that `msglog serve` is running there (MSGLOG_HOST and "
                    "MSGLOG_PORT set the defaults)"
                ) from e
            # One frame per write, each waiting for its reply: Nagle's
            # algorithm would only add delay. An optimisation only, so a
            # socket that does not support it is fine.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if context is not None:
                sock = self._start_tls(sock, port, context)
            self._sock = sock
            self._transact(_frame(TAG_NAME, name), "name", NameRejected)
            self._transact(_frame(TAG_PASS, password), "password", PasswordRejected)

    def _tls_context(self) -> ssl.SSLContext:
        """The TLS settings: TLS 1.2 or newer, the server verified."""
        ##= spec/protocol.md#tls
        ##% A client that speaks TLS MUST offer only TLS 1.3 and TLS 1.2, and MUST verify the server's certificate.
        try:
            context = ssl.create_default_context(cafile=self.cafile)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if self.certfile is not None or self.keyfile is not None:
                if self.certfile is None:
                    raise InvalidArgument("keyfile= needs certfile=, the client certificate")
                context.load_cert_chain(self.certfile, self.keyfile)
        except (OSError, ssl.SSLError) as e:
            raise InvalidArgument(
                f"cannot use the TLS files (cafile={self.cafile!r}, "
                f"certfile={self.certfile!r}, keyfile={self.keyfile!r}): {e}; "
                "give PEM files: cafile the CA that signed the server's "
                "certificate, certfile and keyfile the client's certificate and key"
            ) from e
        return context

    def _start_tls(
        self, sock: socket.socket, port: int, context: ssl.SSLContext
    ) -> socket.socket:
        """The TLS handshake on a fresh connection; closes it on failure."""
        peer = f"{self.host}:{port}"
        try:
            return context.wrap_socket(sock, server_hostname=self.server_hostname or self.host)
        except ssl.SSLCertVerificationError as e:
            sock.close()
            raise TlsError(
                f"the certificate of {peer} did not verify: {e.verify_message}; "
                "pass cafile= the CA that signed it, or server_hostname= a name it carries"
            ) from e
        except TimeoutError as e:
            sock.close()
            raise Timeout(f"no TLS handshake with {peer} within {self.timeout} s") from e
        except (ssl.SSLError, OSError) as e:
            sock.close()
            ##= spec/protocol.md#tls
            ##% A client that speaks TLS and gets 0xFF in answer to its TLS handshake MUST report that the server does not serve TLS or refused the connection.
            # Python's ssl module does not show the bytes that broke the
            # handshake; a msglog server without TLS answers 0xFF and closes,
            # which OpenSSL reports as one of these.
            raise TlsError(
                f"the TLS handshake with {peer} failed ({e}): if the server runs "
                "without TLS (it answers a TLS handshake with 0xFF), connect with "
                "tls=False or start it with --tls-cert/--tls-key; if it asks for a "
                "client certificate, pass certfile= and keyfile=; a server at its "
                "connection limit also ends the handshake at once (retry later)"
            ) from e

    def msg(self, message: Payload) -> None:
        """Sends one message and returns once the server has logged it.

        ``str`` is sent as UTF-8, ``bytes`` as they are (any bytes).

        Raises:
            MessageTooLong: over 65,535 bytes; nothing was sent and the
                session stays open.
            InvalidArgument: neither str nor bytes; nothing was sent.
            NotConnected: no open session (call connect()).
            MessageRejected: the server refused it (for example, empty) and
                closed the session.
            ConnectionClosed, Timeout, ProtocolError: the session is closed;
                after a Timeout the message may or may not have been logged.
        """
        data = _encode("message", message)
        with self._lock:
            if self._sock is None:
                raise NotConnected(
                    "not connected: call connect() before msg() (the session "
                    "may have ended after an error or disconnect())"
                )
            self._transact(_frame(TAG_MSG, data), "message", MessageRejected)

    def disconnect(self) -> None:
        """Ends the session: sends CLOSE and reads its 0x00 confirmation.

        Does nothing when no session is open, so calling it twice is safe.
        The connection is closed even when this raises.

        Raises:
            ConnectionClosed, Timeout, ProtocolError: the server did not
                confirm the CLOSE.
        """
        with self._lock:
            self._disconnect_locked()

    def close(self) -> None:
        """Same as :meth:`disconnect`."""
        self.disconnect()

    def __enter__(self) -> client:
        """Returns the client, connecting first if it has no open session."""
        if not self.connected:
            self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Disconnects; a failure to do so is raised only if nothing else was."""
        if exc_type is None:
            self.disconnect()
            return
        # The exception already in flight is the one that matters; the
        # connection is closed either way.
        with contextlib.suppress(ClientError):
            self.disconnect()

    def __repr__(self) -> str:
        state = "connected" if self.connected else "not connected"
        return f"<msglog client {self.name!r} {self.host}:{self.port} {state}>"

    def _disconnect_locked(self) -> None:
        if self._sock is None:
            return
        try:
            reply = self._exchange(CLOSE_FRAME, "close")
        finally:
            self._drop()
        if reply != REPLY_ACK:
            raise ProtocolError(
                f"the server answered CLOSE with 0x{reply:02X}, not 0x00; "
                "the connection is closed anyway"
            )

    def _transact(self, frame: bytes, what: str, rejected: type[Rejected]) -> None:
        """Sends one frame and checks its reply; on any failure, drops the session."""
        try:
            reply = self._exchange(frame, what)
        except BaseException:
            self._drop()
            raise
        if reply == REPLY_ACK:
            return
        # After 0xFF the server closes; so do we.
        self._drop()
        ##= spec/protocol.md#tls
        ##% A client that does not speak TLS and gets a TLS alert record (first byte 0x15) in answer to its NAME MUST report that the server serves TLS.
        if reply == TLS_ALERT_RECORD and what == "name" and not self.tls:
            raise TlsError(
                f"{self.host}:{self.port} answered with a TLS alert: it serves msglog "
                "inside TLS; connect with tls=True (and cafile= the CA that signed "
                "its certificate)"
            )
        if reply == REPLY_REJECT:
            raise rejected(
                f"the server rejected the {what} (0xFF) and closed the session: {rejected.hint}"
            )
        raise ProtocolError(
            f"the server answered the {what} with 0x{reply:02X}, neither 0x00 "
            "nor 0xFF: is it a msglog server?"
        )

    def _exchange(self, frame: bytes, what: str) -> int:
        """Sends ``frame`` in one write and returns the reply byte."""
        sock = self._sock
        assert sock is not None, "callers check for an open session"
        peer = f"{self.host}:{self.port}"
        try:
            sock.sendall(frame)
            reply = sock.recv(1)
        except TimeoutError as e:
            raise Timeout(
                f"no reply to the {what} from {peer} within {sock.gettimeout()} s; "
                "the session is closed (the frame may or may not have been "
                "processed): connect() again, or raise the timeout"
            ) from e
        except ssl.SSLError as e:
            # With TLS 1.3 a server refuses a client certificate (or its
            # absence) after the handshake: the alert arrives here.
            raise TlsError(
                f"TLS with {peer} failed during the {what}: {e}; if the server "
                "asks for a client certificate, pass certfile= and keyfile= with "
                "one that its client CA signed and that is valid now"
            ) from e
        except OSError as e:
            raise ConnectionClosed(
                f"the connection to {peer} failed during the {what}: "
                f"{e.strerror or e}; connect() again"
            ) from e
        if not reply:
            raise ConnectionClosed(
                f"{peer} closed the connection without replying to the {what}; connect() again"
            )
        return reply[0]

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


#: The PEP 8 spelling of :class:`client`.
Client = client
