#!/usr/bin/env python3
"""Writes the msglog test vectors (spec/vectors/*.json) from the spec.

The committed JSON files are the source of truth; this script is how they
were made, and `--check` says whether they still match it. The expected
results come from a small model of spec/protocol.md written here, on purpose
independently of the Rust code the vectors test: the state table
(#states), the frame layout (#frame, #unknown-tags, #close, #limits) and the
record escaping (#record-format). Standard library only.

    python3 spec/vectors/generate.py           # rewrite the JSON files
    python3 spec/vectors/generate.py --check   # exit 1 if they differ
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAX_PAYLOAD = 65535

# ---------------------------------------------------------------- frames


def frame(tag, payload):
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload over 65535 bytes")
    return bytes([tag]) + len(payload).to_bytes(2, "little") + payload


def NAME(p):
    return frame(1, p)


def PASS(p):
    return frame(2, p)


def MSG(p):
    return frame(3, p)


CLOSE = b"\x04"


def UNKNOWN(tag):
    return bytes([tag])


# ---------------------------------------------------------------- records

# Characters written byte by byte as escapes although they are valid UTF-8.
ESCAPED_RANGES = [
    (0x80, 0x9F),
    (0x61C, 0x61C),
    (0x200B, 0x200F),
    (0x2028, 0x202E),
    (0x2060, 0x2069),
    (0xFEFF, 0xFEFF),
    (0x2400, 0x2426),
]


def char_escaped(c):
    return any(lo <= ord(c) <= hi for lo, hi in ESCAPED_RANGES)


def hex_escape(byte):
    return "\u2426%02X" % byte


def utf8_char_at(data, i):
    """The well-formed UTF-8 character starting at data[i], or None."""
    lead = data[i]
    width = 2 if 0xC2 <= lead <= 0xDF else 3 if 0xE0 <= lead <= 0xEF else 4 if 0xF0 <= lead <= 0xF4 else 0
    if width == 0 or i + width > len(data):
        return None
    try:
        text = data[i : i + width].decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        return None
    return text if len(text) == 1 else None


def escape(data, is_name):
    out = []
    i = 0
    while i < len(data):
        b = data[i]
        if is_name and b == 0x5D:
            out.append(hex_escape(b))
            i += 1
        elif 0x20 <= b <= 0x7E:
            out.append(chr(b))
            i += 1
        elif b <= 0x1F:
            out.append(chr(0x2400 + b))
            i += 1
        elif b == 0x7F:
            out.append("\u2421")
            i += 1
        else:
            c = utf8_char_at(data, i)
            if c is None:
                out.append(hex_escape(b))
                i += 1
            else:
                width = len(c.encode("utf-8"))
                if char_escaped(c):
                    out.extend(hex_escape(x) for x in data[i : i + width])
                else:
                    out.append(c)
                i += width
    return "".join(out)


def record(name, message):
    return "[" + escape(name, True) + "]: " + escape(message, False) + "\r\n"


# ---------------------------------------------------------------- the state table


def run(stream, max_payload=MAX_PAYLOAD):
    """Runs one client byte stream through the spec's state table."""
    state, name = "C", None
    replies, log, rule = bytearray(), [], None
    closed_by_server, mid_frame = False, False
    i = 0

    def reject(r):
        nonlocal state, rule, closed_by_server
        replies.append(0xFF)
        state, rule, closed_by_server = "X", r, True

    while state != "X" and i < len(stream):
        tag = stream[i]
        if tag in (1, 2, 3):
            if len(stream) - i < 3:
                mid_frame = True
                break
            length = int.from_bytes(stream[i + 1 : i + 3], "little")
            if length > max_payload:
                reject("PayloadOverLimit")  # row E1: the payload is not read
                break
            if len(stream) - i - 3 < length:
                mid_frame = True
                break
            payload = stream[i + 3 : i + 3 + length]
            i += 3 + length
        else:
            payload = None
            i += 1

        if tag == 4:  # rows C6, N6, P5
            replies.append(0x00)
            state, closed_by_server = "X", True
        elif tag not in (1, 2, 3):  # rows C7, N7, P6
            reject("UnknownTag")
        elif state == "C" and tag == 1:
            if not payload:
                reject("EmptyName")  # C2
            elif payload[0] == 0:
                reject("NameStartsWithNul")  # C3
            else:
                name, state = payload, "N"  # C1
                replies.append(0x00)
        elif state == "N" and tag == 2:
            if not payload:
                reject("EmptyPassword")  # N3
            elif payload[0] % 2 == 0:
                reject("PasswordRejected")  # N4
            else:
                state = "P"  # N2
                replies.append(0x00)
        elif state == "P" and tag == 3:
            if not payload:
                reject("EmptyMessage")  # P4
            else:
                log.append(record(name, payload))  # P3
                replies.append(0x00)
        else:
            reject("OutOfOrder")  # C4, C5, N1, N5, P1, P2
    return {
        "replies": replies.hex(),
        "closed_by": "server" if closed_by_server else "client",
        "mid_frame": mid_frame,
        "rule": rule,
        "log": log,
    }


# ---------------------------------------------------------------- the vectors

S = "protocol.md#"
LOGIN = NAME(b"MyUser") + PASS(b"A")
ALL_BYTES = bytes(range(256))


def sessions():
    v = []

    def add(id, description, spec, client, max_payload=None):
        entry = {"id": id, "description": description, "spec": [S + s for s in spec]}
        if max_payload is not None:
            entry["max_payload"] = max_payload
        entry["client"] = client.hex()
        entry.update(run(client, MAX_PAYLOAD if max_payload is None else max_payload))
        v.append(entry)

    # Happy paths (rows C1, N2, P3, P5).
    add("happy-one-message", "The reference README's example: NAME, PASS, one MSG, CLOSE.",
        ["states", "name", "pass", "msg", "close", "record-format"],
        NAME(b"MyTestCase") + PASS(b"A") + MSG(b"Hello!") + CLOSE)
    add("happy-two-messages", "Two messages on one connection, then CLOSE.",
        ["states", "msg", "close"],
        LOGIN + MSG(b"This is my message.  It is modestly important.")
        + MSG(b"I can send multiple messages without reconnecting.") + CLOSE)
    add("happy-no-close", "NAME, PASS, MSG, then the client ends its stream at a frame boundary (row E3).",
        ["states", "end-of-stream", "acknowledgement"],
        LOGIN + MSG(b"bye without CLOSE"))
    add("reference-password-mypassword", "The reference README's password 'MyPassword': 'M' (0x4D) is odd.",
        ["pass"], NAME(b"MyUser") + PASS(b"MyPassword") + MSG(b"hi") + CLOSE)
    add("password-lower-a", "Password 'a' (0x61) is odd: accepted.",
        ["pass"], NAME(b"u") + PASS(b"a") + MSG(b"ok") + CLOSE)
    add("password-c", "Password 'C' (0x43), as in the reference README: accepted.",
        ["pass"], NAME(b"First User") + PASS(b"C") + MSG(b"x") + CLOSE)
    add("password-binary-odd", "Password whose first byte is 0xFF (odd): accepted; only the first byte counts.",
        ["pass"], NAME(b"u") + PASS(b"\xff\x00\x02") + MSG(b"x") + CLOSE)
    add("pipelined-ten-messages", "Ten messages pipelined after the login, answered in order.",
        ["acknowledgement", "msg"],
        LOGIN + b"".join(MSG(b"message %d" % n) for n in range(10)) + CLOSE)
    add("c-test-client-back-to-back", "The reference C test client: NAME, PASS and MSG back to back without waiting.",
        ["acknowledgement", "frame"],
        NAME(b"ctest") + PASS(b"A") + MSG(b"from the C test client"))

    # Rejections in C (rows C2..C5, C7).
    add("name-empty", "NAME with an empty payload (row C2).", ["name", "rules"], NAME(b"") + PASS(b"A"))
    add("name-nul-first", "NAME whose first byte is 0x00 (row C3).", ["name", "rules"],
        NAME(b"\x00admin") + PASS(b"A") + MSG(b"x"))
    add("name-nul-only", "NAME that is the single byte 0x00 (row C3).", ["name"], NAME(b"\x00"))
    add("pass-before-name", "PASS as the first frame (row C4).", ["states", "rules"], PASS(b"A") + NAME(b"u"))
    add("msg-before-name", "MSG as the first frame is out of order; the reference took it as the NAME (row C5).",
        ["states", "deviations"], MSG(b"MyUser") + PASS(b"A") + MSG(b"x"))
    add("msg-before-name-empty", "Empty MSG as the first frame: out of order, whatever the payload (row C5).",
        ["states"], MSG(b""))

    # Rejections in N (rows N1, N3..N5).
    add("name-twice", "A second NAME instead of PASS (row N1).", ["states", "name"],
        NAME(b"alice") + NAME(b"bob") + PASS(b"A"))
    add("name-twice-empty", "An empty second NAME: out of order, not EmptyName (row N1).", ["states"],
        NAME(b"alice") + NAME(b""))
    add("password-b", "Password 'B' (0x42) is even: rejected, as in the reference suite (row N4).",
        ["pass", "rules"], NAME(b"MyUser") + PASS(b"B"))
    add("password-baaa", "Password 'BAAA': only the even first byte counts (row N4).", ["pass"],
        NAME(b"MyUser") + PASS(b"BAAA") + MSG(b"never logged") + CLOSE)
    add("password-nul", "Password whose first byte is 0x00 (even) (row N4).", ["pass"],
        NAME(b"u") + PASS(b"\x00A"))
    add("password-empty", "PASS with an empty payload (row N3).", ["pass", "rules"], NAME(b"u") + PASS(b""))
    add("msg-before-pass", "MSG right after NAME (row N5).", ["states"], NAME(b"u") + MSG(b"sneaky") + CLOSE)

    # Rejections in P (rows P1, P2, P4).
    add("name-after-pass", "NAME after a successful PASS: the name cannot change (row P1).", ["states", "name"],
        LOGIN + MSG(b"one") + NAME(b"other") + MSG(b"two"))
    add("pass-twice", "A second PASS (row P2).", ["states"], LOGIN + PASS(b"A"))
    add("msg-empty", "MSG with an empty payload (row P4).", ["msg", "rules"], LOGIN + MSG(b""))
    add("msg-empty-after-messages", "Two messages, then an empty MSG: the first two stay logged (rows P3, P4).",
        ["msg", "replies"], LOGIN + MSG(b"one") + MSG(b"two") + MSG(b"") + MSG(b"three"))

    # CLOSE (rows C6, N6, P5, X1).
    add("close-in-c", "CLOSE as the first frame: the bare 0x04 the reference client sends (row C6).",
        ["close", "deviations"], CLOSE)
    add("close-in-n", "CLOSE after NAME (row N6).", ["close"], NAME(b"u") + CLOSE)
    add("close-in-p", "CLOSE right after PASS (row P5).", ["close"], LOGIN + CLOSE)
    add("close-then-more-bytes", "Frames after CLOSE are never processed (row X1).",
        ["close", "states", "graceful-close"], LOGIN + MSG(b"kept") + CLOSE + MSG(b"dropped") + CLOSE)
    add("close-with-reference-length",
        "The reference's idea of CLOSE, 0x04 with a length and payload, after PASS: CLOSE, then ignored bytes; "
        "the reference logged 'hello' and kept the connection open.",
        ["close", "deviations"], LOGIN + b"\x04\x05\x00hello")
    add("close-twice", "A second CLOSE is after the close and gets no reply (row X1).", ["close", "states"],
        CLOSE + CLOSE)
    add("reject-then-more-bytes", "After 0xFF nothing more is processed (rows N4, X1).", ["replies", "states"],
        NAME(b"u") + PASS(b"B") + PASS(b"A") + MSG(b"never") + CLOSE)

    # Unknown tags in every state (rows C7, N7, P6).
    for tag in (0x00, 0x05, 0x06, 0x7F, 0xFF):
        for state, prefix in (("c", b""), ("n", NAME(b"u")), ("p", LOGIN)):
            row = {"c": "C7", "n": "N7", "p": "P6"}[state]
            add("unknown-%02x-in-%s" % (tag, state),
                "Unknown tag 0x%02X in state %s, followed by bytes that look like a frame (row %s)."
                % (tag, state.upper(), row),
                ["unknown-tags", "rules"], prefix + UNKNOWN(tag) + b"\x01\x00A" + CLOSE)

    # Names.
    add("name-nul-inside", "A NUL after the first byte is kept, written as a control picture; "
        "the reference cut the name there.", ["name", "record-format", "deviations"],
        NAME(b"Al\x00ice") + PASS(b"A") + MSG(b"hi") + CLOSE)
    add("name-with-bracket", "`]` in a name is escaped so the name cannot end early.",
        ["record-format"], NAME(b"a]b") + PASS(b"A") + MSG(b"x]: y") + CLOSE)
    add("name-binary", "A name of every byte value: it survives, escaped.", ["name", "record-format"],
        NAME(bytes(range(1, 256)) + b"\x00") + PASS(b"A") + MSG(b"m") + CLOSE)
    add("utf8-name", "A UTF-8 name stays readable.", ["record-format"],
        NAME("Jürgen Ødegård".encode()) + PASS(b"A") + MSG("grüße".encode()) + CLOSE)

    # Forging attempts.
    add("forge-crlf", "A message with CR LF and a fake record stays one escaped record.",
        ["record-format", "deviations"],
        NAME(b"mallory") + PASS(b"A") + MSG(b"hi\r\n[admin]: transfer all funds") + CLOSE)
    add("forge-lf", "A bare LF cannot start a new line either.", ["record-format"],
        NAME(b"mallory") + PASS(b"A") + MSG(b"x\n[root]: y\r") + CLOSE)
    add("forge-name-separator", "A name with `]: ` cannot fake another user's record.", ["record-format"],
        NAME(b"admin]: I approve. [mallory") + PASS(b"A") + MSG(b"ok") + CLOSE)
    add("forge-escape-char", "The escape character and control pictures typed literally are escaped themselves.",
        ["record-format"], NAME(b"u") + PASS(b"A") + MSG("␦0D␍␊␀".encode()) + CLOSE)
    add("forge-bidi", "Directional overrides and line separators are escaped.", ["record-format"],
        NAME(b"u") + PASS(b"A") + MSG("a\u202eb\u2028c\u200bd\ufeff".encode()) + CLOSE)

    # Binary and UTF-8 messages.
    add("binary-message", "Every byte value in one message; the reference client could not send this.",
        ["record-format", "deviations"], LOGIN + MSG(ALL_BYTES) + CLOSE)
    add("utf8-message", "Readable UTF-8 passes unchanged.", ["record-format"],
        LOGIN + MSG("héllo wörld ✓ 日本語 😀".encode()) + CLOSE)
    add("utf8-invalid", "Invalid UTF-8: overlong, surrogate, truncated and stray bytes are escaped byte by byte.",
        ["record-format"], LOGIN + MSG(b"\xc0\xaf \xed\xa0\x80 \xe2\x82 \x80 \xf4\x90\x80\x80 \xc3") + CLOSE)
    add("utf8-c1", "C1 controls (U+0085 NEL) are escaped.", ["record-format"],
        LOGIN + MSG("a\u0085b\u009bc".encode()) + CLOSE)

    # Lengths.
    add("msg-length-256", "A 256-byte message: length field 00 01, little-endian.", ["frame"],
        LOGIN + MSG(b"L" * 256) + CLOSE)
    add("msg-length-258", "A 258-byte message: length field 02 01; read big-endian it would be 513.",
        ["frame"], LOGIN + MSG(bytes(range(256)) + b"!!") + CLOSE)

    # End of stream (rows E3, E4).
    add("eof-immediately", "The client connects and ends its stream at once (row E3 in C).",
        ["end-of-stream"], b"")
    add("eof-after-name", "End of stream after NAME (row E3 in N).", ["end-of-stream"], NAME(b"u"))
    add("eof-tag-only", "End of stream after the tag of a MSG (row E4).", ["end-of-stream"], LOGIN + b"\x03")
    add("eof-half-header", "End of stream after the tag and one length byte (row E4).", ["end-of-stream"],
        LOGIN + b"\x03\x05")
    add("eof-header-only", "End of stream after a whole MSG header (row E4).", ["end-of-stream"],
        LOGIN + b"\x03\x05\x00")
    add("eof-half-payload", "End of stream halfway through a MSG payload: nothing of it is logged (row E4).",
        ["end-of-stream"], LOGIN + MSG(b"first") + b"\x03\x05\x00he")
    add("eof-mid-name", "End of stream halfway through the NAME (row E4 in C).", ["end-of-stream"],
        b"\x01\x04\x00ab")
    add("eof-mid-pass", "End of stream halfway through the PASS header (row E4 in N).", ["end-of-stream"],
        NAME(b"u") + b"\x02\x01")

    # A server with a lower payload limit (row E1).
    add("limit-msg-over", "MSG one byte over a 16-byte limit: rejected when the length is read (row E1).",
        ["limits", "rules"], LOGIN + MSG(b"x" * 17), max_payload=16)
    add("limit-msg-at", "MSG exactly at a 16-byte limit: accepted.", ["limits"],
        LOGIN + MSG(b"x" * 16) + CLOSE, max_payload=16)
    add("limit-header-only", "Only the header of an over-limit frame: rejected without waiting for the payload.",
        ["limits"], LOGIN + b"\x03\xe8\x03", max_payload=16)
    add("limit-name-over", "NAME over the limit in state C (row E1).", ["limits"],
        NAME(b"n" * 17) + PASS(b"A"), max_payload=16)
    add("limit-out-of-order-over", "An over-limit PASS in state C is rejected for its length, before the "
        "state machine sees it (row E1).", ["limits"], PASS(b"p" * 20), max_payload=16)
    return v


def sessions_large():
    v = []

    def add(id, description, spec, client):
        entry = {"id": id, "description": description, "spec": [S + s for s in spec], "client": client.hex()}
        entry.update(run(client))
        v.append(entry)

    add("max-message", "A 65535-byte message, the largest payload: length field FF FF.",
        ["limits", "frame", "msg"], LOGIN + MSG(b"x" * 65535) + CLOSE)
    add("max-name", "A 65535-byte name.", ["limits", "name"],
        NAME(b"n" * 65535) + PASS(b"A") + MSG(b"m") + CLOSE)
    add("max-message-then-small", "A maximal message and a small one pipelined behind it.",
        ["limits", "acknowledgement"], LOGIN + MSG(bytes(range(32, 127)) * 689 + b"x" * 80) + MSG(b"c") + CLOSE)
    add("max-message-eof-before-last-byte", "A 65535-byte message missing its last byte, then end of stream.",
        ["limits", "end-of-stream"], LOGIN + MSG(b"x" * 65535)[:-1])
    return v


def records():
    def rec(id, name, message):
        return {"id": id, "name_hex": name.hex(), "message_hex": message.hex(), "record": record(name, message)}

    good = [
        rec("reference-example", b"MyTestCase", b"Hello!"),
        rec("printable-ascii", bytes(range(0x20, 0x7F)).replace(b"]", b""), bytes(range(0x20, 0x7F))),
        rec("bracket-in-name", b"admin]: x", b"y"),
        rec("bracket-in-message", b"u", b"x]: y [z]"),
        rec("crlf", b"mallory", b"hi\r\n[admin]: pay"),
        rec("controls", b"c", bytes(range(0x00, 0x20)) + b"\x7f"),
        rec("nul-in-name", b"Al\x00ice", b"a\tb"),
        rec("utf8-text", "Jürgen".encode(), "héllo ✓ 日本 😀".encode()),
        rec("invalid-utf8", b"u", b"\xff\xc3(\x00\x7f"),
        rec("truncated-utf8", b"u", b"\xe2\x82"),
        rec("overlong-and-surrogate", b"u", b"\xc0\xaf\xe0\x80\xaf\xed\xa0\x80\xed\xbf\xbf"),
        rec("above-max-code-point", b"u", b"\xf4\x90\x80\x80\xf5\x80\x80\x80"),
        rec("max-code-point", b"u", "\U0010FFFF".encode()),
        rec("c1-controls", b"u", "\u0080\u0085\u009f\u00a0".encode()),
        rec("bidi-and-invisible", "\u202eevil".encode(),
            "\u061c\u200b\u200f\u2028\u2029\u202a\u202e\u2060\u2069\ufeff\u206a".encode()),
        rec("control-pictures-literal", "␀".encode(), "␀␍␊␟␠␡␥␦␧".encode()),
        rec("escape-lookalike", b"u", "␦5D␦".encode()),
        rec("every-byte-message", b"u", ALL_BYTES),
        rec("every-byte-name", ALL_BYTES, b"m"),
        rec("reference-client-suite", b"MyUser", b"This is my message.  It is modestly important."),
    ]
    invalid = [
        ("missing-crlf", b"[a]: b", "no CR LF at the end"),
        ("lf-only", b"[a]: b\n", "LF without CR"),
        ("missing-open-bracket", b"a]: b\r\n", "does not start with ["),
        ("missing-separator", b"[a] b\r\n", "no ]: after the name"),
        ("short-escape", "[a]: ␦4\r\n".encode(), "escape with one hex digit"),
        ("lower-case-escape", "[a]: ␦ff\r\n".encode(), "escape with lower-case hex digits"),
        ("needless-escape", "[a]: ␦41\r\n".encode(), "A written as an escape"),
        ("raw-tab", b"[a]: \tb\r\n", "a raw TAB instead of its control picture"),
        ("raw-bidi", "[a]: \u202e\r\n".encode(), "a raw U+202E instead of its escapes"),
        ("not-utf8", b"[a]: \xff\r\n", "a raw byte that is not UTF-8"),
        ("cr-inside", b"[a]: b\rc\r\n", "a raw CR inside the record"),
        ("escaped-valid-utf8", "[a]: ␦C3␦A9\r\n".encode(), "é written as escapes"),
        ("empty-name", b"[]: x\r\n", "an empty name: no server writes one, the protocol rejects an empty NAME"),
        ("empty-message", b"[a]: \r\n", "an empty message: no server writes one, the protocol rejects an empty MSG"),
    ]
    return {
        "records": good,
        "invalid": [{"id": i, "line_hex": l.hex(), "why": w} for i, l, w in invalid],
    }


HEADER_SESSIONS = (
    "msglog session vectors: see spec/README.md. Each runs one connection: the client sends `client` "
    "(hex), the server replies `replies` (hex) and appends `log` (records, exactly as written)."
)


def outputs():
    return {
        "sessions.json": {"comment": HEADER_SESSIONS, "vectors": sessions()},
        "sessions-large.json": {"comment": HEADER_SESSIONS + " Large payloads.", "vectors": sessions_large()},
        "records.json": dict(
            comment="msglog record vectors: see spec/README.md. `records` encode and decode exactly; "
            "`invalid` lines are rejected by the decoder.",
            **records(),
        ),
    }


def render(obj):
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def main():
    check = "--check" in sys.argv[1:]
    ids = [v["id"] for name in ("sessions.json", "sessions-large.json") for v in outputs()[name]["vectors"]]
    assert len(ids) == len(set(ids)), "duplicate vector id"
    stale = []
    for name, obj in outputs().items():
        path = HERE / name
        text = render(obj)
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("out of date: " + ", ".join(stale) + "; run python3 spec/vectors/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
