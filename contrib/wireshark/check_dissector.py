#!/usr/bin/env python3
"""Checks the Wireshark dissector msglog.lua with tshark against the spec's vectors.

    python3 contrib/wireshark/check_dissector.py [--keep DIR]

Every session vector of spec/vectors/sessions*.json becomes one TCP
connection in a pcap file written here (tcp_capture.py), its client bytes
split four ways: whole (MSS-sized segments), one byte per segment, tag /
length / payload in separate segments, and seeded random pieces of 1 to 7
bytes (the large vectors: whole and tag / length / payload only). The
server's replies are their own segments, sent as soon as the client bytes
they answer are in, and the connections are interleaved in the file. tshark
then decodes the capture with the dissector (PDML output), and for every
connection this checks, against the vector:

- the client frames the server processes: number, tag, length, payload
  (bytes and text), the state each arrived in, the reply the state table
  calls for and the rule broken; the bytes after the closing frame shown as
  not processed, and nothing else;
- every reply byte: value, meaning, the frame it answers (number, tag,
  packet) and, for a 0xFF, the rule;
- expert info: warnings exactly for the client's violations (OutOfOrder,
  UnknownTag, bytes sent after the 0xFF reply, CLOSE with a length field),
  notes for each 0xFF and for bytes not processed, no other expert info, no
  Lua error and no malformed packet.

The same capture is decoded in one pass and in two (-2, as Wireshark does
when it redissects: the results must agree, and the second pass links each
frame to its reply) and with TCP reassembly off (the same frames and
replies, from pieces). More captures cover the heuristic on a port other
than 5555 (msglog connections claimed, other TCP streams not) and a packet
cut short by the capture's snapshot length.

tshark runs with HOME in a temporary directory, so no personal plugins or
preferences apply. Exit status 0 when everything matched, 1 otherwise, with
each mismatch listed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DISSECTOR = HERE / "msglog.lua"
VECTOR_FILES = sorted((REPO / "spec" / "vectors").glob("sessions*.json"))

sys.path.insert(0, str(HERE))
from tcp_capture import MSS, Connection, Packet, interleave, write_pcap  # noqa: E402

CLIENT_IP, SERVER_IP = "10.0.0.1", "10.0.0.2"
MSGLOG_PORT = 5555
#: A port no dissector claims, for the heuristic.
OTHER_PORT = 47000
TAG_NAME, TAG_PASS, TAG_MSG, TAG_CLOSE = 1, 2, 3, 4
HEADER_LEN = 3
WARNINGS = {"out_of_order", "unknown_tag", "sent_after_reject", "close_not_one_byte", "bad_reply"}
NOTES = {"rejected", "not_processed", "truncated"}
#: tshark's bound per run; the whole check takes about 15 seconds.
TSHARK_TIMEOUT = 120


# ---------------------------------------------------------------- the spec's framing


@dataclass
class Frame:
    """A frame as the spec frames the client's bytes (state aside)."""

    start: int
    tag: int
    length: int | None  # None: CLOSE or an unknown tag (one byte)
    header_end: int | None  # None: the header is incomplete
    end: int | None  # None: the frame is incomplete


def parse_frames(data: bytes) -> list[Frame]:
    """Every frame in ``data``, the last one possibly incomplete."""
    frames, pos = [], 0
    while pos < len(data):
        tag = data[pos]
        if tag in (TAG_NAME, TAG_PASS, TAG_MSG):
            if pos + HEADER_LEN > len(data):
                frames.append(Frame(pos, tag, None, None, None))
                break
            length = int.from_bytes(data[pos + 1 : pos + 3], "little")
            end = pos + HEADER_LEN + length
            frames.append(
                Frame(pos, tag, length, pos + HEADER_LEN, end if end <= len(data) else None)
            )
            if end > len(data):
                break
            pos = end
        else:
            frames.append(Frame(pos, tag, None, pos + 1, pos + 1))
            pos += 1
    return frames


def decidable(start: bytes) -> bool:
    """Whether the start of a frame is enough for the state table (see msglog.lua)."""
    if start[0] not in (TAG_NAME, TAG_PASS, TAG_MSG):
        return True
    if len(start) < HEADER_LEN:
        return False
    length = int.from_bytes(start[1:3], "little")
    return length == 0 or start[0] == TAG_MSG or len(start) > HEADER_LEN


def judged_at(data: bytes, fr: Frame) -> int:
    """Where the bytes of ``fr`` so far first are decidable()."""
    end = fr.start + 1
    while not decidable(data[fr.start : end]):
        end += 1
    return end


# The characters msglog.lua shows as \xHH although they are valid UTF-8.
HIDDEN = [
    (0x00, 0x1F),
    (0x7F, 0x9F),
    (0x61C, 0x61C),
    (0x200B, 0x200F),
    (0x2028, 0x202E),
    (0x2060, 0x2069),
    (0xFEFF, 0xFEFF),
]


def readable(data: bytes) -> str:
    """The payload as msglog.lua shows it: UTF-8 text, the rest as \\xHH."""
    out, i = [], 0
    while i < len(data):
        lead = data[i]
        width = (
            1
            if lead < 0x80
            else 2
            if 0xC2 <= lead <= 0xDF
            else 3
            if 0xE0 <= lead <= 0xEF
            else 4
            if 0xF0 <= lead <= 0xF4
            else 0
        )
        try:
            char = data[i : i + width].decode("utf-8") if width and i + width <= len(data) else None
        except UnicodeDecodeError:
            char = None
        if char == "\\":
            out.append("\\\\")
        elif char is not None and not any(lo <= ord(char) <= hi for lo, hi in HIDDEN):
            out.append(char)
        else:
            width = len(char.encode()) if char else 1
            out.extend(f"\\x{b:02X}" for b in data[i : i + width])
        i += width
    return "".join(out)


# ---------------------------------------------------------------- captures


def split_whole(data: bytes, frames: list[Frame], rng: random.Random) -> list[int]:
    return list(range(MSS, len(data), MSS))


def split_bytes(data: bytes, frames: list[Frame], rng: random.Random) -> list[int]:
    return list(range(1, len(data)))


def split_fields(data: bytes, frames: list[Frame], rng: random.Random) -> list[int]:
    cuts = set()
    for fr in frames:
        cuts.update(c for c in (fr.start + 1, fr.header_end) if c)
        if fr.length:
            end = fr.end or len(data)
            cuts.update(range(fr.header_end + MSS, end, MSS))
            cuts.add(end)
    return sorted(c for c in cuts if 0 < c < len(data))


def split_random(data: bytes, frames: list[Frame], rng: random.Random) -> list[int]:
    cuts, pos = [], 0
    while True:
        pos += rng.randint(1, 7)
        if pos >= len(data):
            return cuts
        cuts.append(pos)


SPLITS = {
    "whole": split_whole,
    "bytes": split_bytes,
    "fields": split_fields,
    "random": split_random,
}
#: Splits for vectors of more than a few hundred bytes (one byte per packet
#: would be 65,000 packets).
LARGE_SPLITS = ("whole", "fields")


@dataclass
class Case:
    """One connection of a capture and what the dissector must show for it."""

    label: str
    client_port: int
    server_port: int
    data: bytes = b""
    replies: bytes = b""
    #: Decodes as msglog at all (the heuristic's negatives do not).
    msglog: bool = True
    #: The vector has a payload limit the dissector cannot know.
    limit: bool = False
    mid_frame: bool = False
    rule: str | None = None
    processed: list[Frame] = field(default_factory=list)
    #: The packet each processed frame ends in, and the one where its start
    #: is enough to judge it (see decidable()).
    frame_packets: list[Packet] = field(default_factory=list)
    judged_packets: list[Packet] = field(default_factory=list)
    reply_packets: list[Packet] = field(default_factory=list)
    #: Client bytes in segments after the one with the 0xFF.
    sent_after_reject: bool = False
    #: Checks of a hand-made connection instead of the vector checks.
    custom: Callable[[Case, Decoded], list[str]] | None = None

    def ignored(self) -> int:
        if not self.processed or self.mid_frame:
            return 0
        return len(self.data) - self.processed[-1].end

    def close_form(self) -> bool:
        """The bytes after a closing CLOSE are a u16 length and exactly that many bytes."""
        if not self.processed or self.processed[-1].tag != TAG_CLOSE:
            return False
        rest = self.data[self.processed[-1].end :]
        return len(rest) >= 2 and len(rest) == 2 + int.from_bytes(rest[:2], "little")

    def expected_warnings(self) -> set[str]:
        expected = set()
        if self.rule == "OutOfOrder":
            expected.add("out_of_order")
        if self.rule == "UnknownTag":
            expected.add("unknown_tag")
        if self.sent_after_reject:
            expected.add("sent_after_reject")
        if self.close_form():
            expected.add("close_not_one_byte")
        return expected

    def expected_notes(self) -> set[str]:
        expected = set()
        if 0xFF in self.replies:
            expected.add("rejected")
        if self.ignored():
            expected.add("not_processed")
        return expected


def vector_connection(
    vector: dict, split: str, client_port: int, server_port: int
) -> tuple[Connection, Case]:
    """The connection of one vector with one split, and what it must decode to."""
    data = bytes.fromhex(vector["client"])
    replies = bytes.fromhex(vector["replies"])
    frames = parse_frames(data)
    complete = [fr for fr in frames if fr.end is not None]
    limit = vector.get("max_payload")
    if len(complete) < len(replies) and limit is None:
        raise ValueError(f"vector {vector['id']}: fewer frames than replies")
    # When the server has what it needs to answer frame k: the whole frame,
    # or the header of a frame whose length is over the vector's limit.
    due = []
    for fr in frames[: len(replies)]:
        over = limit is not None and fr.length is not None and fr.length > limit
        due.append(fr.header_end if over else fr.end)
    case = Case(
        label=f"{vector['id']} ({split})",
        client_port=client_port,
        server_port=server_port,
        data=data,
        replies=replies,
        limit=limit is not None,
        mid_frame=vector.get("mid_frame", False),
        rule=vector.get("rule"),
        processed=complete[: len(replies)],
    )
    conn = Connection((CLIENT_IP, client_port), (SERVER_IP, server_port))
    rng = random.Random(f"{vector['id']} {split}")
    cuts = SPLITS[split](data, frames, rng)
    bounds = list(zip([0, *cuts], [*cuts, len(data)], strict=True)) if data else []
    answered, rejected, server_closed = 0, False, False
    for a, b in bounds:
        packet = conn.client_sends(data[a:b])
        case.sent_after_reject |= rejected
        case.frame_packets += [packet for fr in case.processed if a < fr.end <= b]
        case.judged_packets += [packet for fr in case.processed if a < judged_at(data, fr) <= b]
        first = answered
        while answered < len(replies) and due[answered] <= b:
            answered += 1
        if answered > first:
            packet = conn.server_sends(replies[first:answered])
            case.reply_packets += [packet] * (answered - first)
            rejected = 0xFF in replies[:answered]
            if vector["closed_by"] == "server" and answered == len(replies):
                conn.server_closes()
                server_closed = True
    if answered != len(replies):
        raise ValueError(f"vector {vector['id']}: replies left unsent")
    conn.client_closes()
    if not server_closed:
        conn.server_closes()
    return conn, case


# ---------------------------------------------------------------- tshark


@dataclass(eq=False)
class Item:
    """One msglog tree item (a frame, a reply or another piece) of a packet."""

    packet: int
    fields: dict[str, list[ET.Element]]
    #: (expert name without "msglog.", severity) for each expert info.
    experts: list[tuple[str, str]]

    def show(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0].get("show") if values else None

    def number(self, name: str) -> int | None:
        value = self.show(name)
        return None if value is None else int(value, 0)

    def value(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0].get("value") if values else None


@dataclass
class Decoded:
    """What tshark showed for one connection, by client port."""

    items: list[Item] = field(default_factory=list)
    packets: set[int] = field(default_factory=set)


def tshark_env(home: Path) -> dict[str, str]:
    """tshark's environment: a fresh HOME, so no personal plugins or preferences apply."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WIRESHARK_", "XDG_"))}
    env["HOME"] = str(home)
    return env


def run_tshark(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["tshark", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=TSHARK_TIMEOUT,
        check=False,
    )


def tshark_stderr(result: subprocess.CompletedProcess[str]) -> str:
    """tshark's stderr without its warning about running as root."""
    return "\n".join(
        line for line in result.stderr.splitlines() if "Running as user" not in line
    ).strip()


def check_loaded(env: dict[str, str]) -> list[str]:
    """That tshark loads the script: msglog among its protocols and TCP heuristics."""
    lua = f"lua_script:{DISSECTOR}"
    protocols = run_tshark(["-G", "protocols", "-X", lua], env)
    if not any(line.split("\t")[2:3] == ["msglog"] for line in protocols.stdout.splitlines()):
        return [
            f"tshark -G protocols -X {lua} does not list msglog: the script was not loaded.\n"
            f"  tshark's stderr: {tshark_stderr(protocols) or '(nothing)'}\n"
            "  If that names no Lua error: Lua may be off (enable_lua = false in the global\n"
            "  init.lua), or tshark runs as root and skips user scripts (set\n"
            "  run_user_scripts_when_superuser = true in init.lua, as Debian 12's tshark 4.0\n"
            "  ships it, or run as a user that is not root)."
        ]
    heuristics = run_tshark(["-G", "heuristic-decodes", "-X", lua], env)
    if not any(
        line.split("\t")[:2] == ["tcp", "msglog"] for line in heuristics.stdout.splitlines()
    ):
        return [f"tshark -G heuristic-decodes -X {lua} does not list msglog's TCP heuristic"]
    return []


def decode(pcap: Path, env: dict[str, str], *options: str) -> tuple[dict[int, Decoded], list[str]]:
    """Runs tshark on ``pcap``; returns the msglog items by client port, and errors."""
    result = run_tshark(
        [
            "-X",
            f"lua_script:{DISSECTOR}",
            "-o",
            "tcp.desegment_tcp_streams:TRUE",
            *options,
            "-r",
            str(pcap),
            "-T",
            "pdml",
            # Only these protocols in full; the others by name (and summary) only.
            "-J",
            "msglog _ws.lua _ws.malformed",
        ],
        env,
    )
    errors = []
    stderr = tshark_stderr(result)
    if result.returncode != 0 or stderr:
        errors.append(
            f"tshark {' '.join(options)} on {pcap.name}: exit {result.returncode}: {stderr}"
        )
    decoded: dict[int, Decoded] = {}
    for packet in ET.fromstring(result.stdout).iter("packet"):
        number = int(next(f.get("show") for f in packet.iter("field") if f.get("name") == "num"))
        ports = None
        for proto in packet.iter("proto"):
            name = proto.get("name")
            if name.startswith("_ws.lua") or name.startswith("_ws.malformed"):
                errors.append(f"{pcap.name} packet {number}: {proto.get('showname')}")
            elif name == "tcp":
                ports = re.search(r"Src Port: (\d+), Dst Port: (\d+)", proto.get("showname", ""))
        if ports is None:
            continue
        src, dst = int(ports.group(1)), int(ports.group(2))
        client_port = dst if src in (MSGLOG_PORT, OTHER_PORT) else src
        conn = decoded.setdefault(client_port, Decoded())
        for proto in packet.iter("proto"):
            if proto.get("name") != "msglog":
                continue
            conn.packets.add(number)
            item_fields: dict[str, list[ET.Element]] = {}
            experts = []
            for f in proto.iter("field"):
                item_fields.setdefault(f.get("name"), []).append(f)
                if f.get("name") == "_ws.expert":
                    names = [c.get("name") for c in f if c.get("name", "").startswith("msglog.")]
                    levels = [
                        c.get("showname", "") for c in f if c.get("name") == "_ws.expert.severity"
                    ]
                    severity = levels[0].removeprefix("Severity level: ") if levels else "?"
                    experts.append((names[0][len("msglog.") :] if names else "?", severity))
                elif f.get("name", "").startswith(("_ws.lua", "_ws.malformed")):
                    errors.append(f"{pcap.name} packet {number}: {f.get('showname')}")
            conn.items.append(Item(number, item_fields, experts))
    return decoded, errors


# ---------------------------------------------------------------- checks


def frame_facts(item: Item) -> dict[str, object]:
    return {
        "index": item.number("msglog.index"),
        "tag": item.number("msglog.tag"),
        "length": item.number("msglog.length"),
        "state": item.show("msglog.state"),
        "expected_reply": item.number("msglog.expected_reply"),
        "rule": item.show("msglog.rule"),
    }


def expected_frames(case: Case) -> list[dict[str, object]]:
    """The facts of each processed frame, from the vector."""
    facts, state = [], "C"
    for k, fr in enumerate(case.processed):
        reply = case.replies[k]
        facts.append(
            {
                "index": k + 1,
                "tag": fr.tag,
                "length": fr.length,
                "state": state,
                "expected_reply": reply,
                "rule": case.rule if reply == 0xFF else None,
            }
        )
        if reply == 0x00:
            state = {TAG_NAME: "N", TAG_PASS: "P", TAG_MSG: "P"}.get(fr.tag, "X")
    return facts


def check_case(case: Case, got: Decoded, two_pass: bool, reassembled: bool = True) -> list[str]:
    """Mismatches between what tshark showed for a connection and the vector."""
    problems: list[str] = []

    def expect(what: str, actual: object, wanted: object) -> None:
        if actual != wanted:
            problems.append(f"{case.label}: {what}: got {actual!r}, want {wanted!r}")

    if not case.msglog:
        expect("msglog items on a connection that is not msglog", len(got.items), 0)
        return problems
    frames = [it for it in got.items if it.show("msglog.index") is not None]
    replies = [it for it in got.items if it.show("msglog.reply") is not None]
    want = expected_frames(case)

    # Frames.
    facts = [frame_facts(it) for it in frames]
    if case.limit:
        # The limit is the server's, invisible on the wire: the frames before
        # the one it rejected are as the vector says.
        cut = case.replies.index(0xFF) if 0xFF in case.replies else len(want)
        expect("frames before the rejected one", facts[:cut], want[:cut])
    elif reassembled:
        expect("frames", facts, want)
    else:
        # Without reassembly a frame the stream ends in is shown too, as far
        # as it goes.
        tail = parse_frames(case.data)[len(case.processed) :]
        extra = (
            case.mid_frame
            and tail
            and decidable(case.data[tail[0].start : tail[0].start + HEADER_LEN + 1])
        )
        expect("frames", facts[: len(want)], want)
        expect("frames after the processed ones", len(facts) - len(want), 1 if extra else 0)
    if reassembled and not case.limit:
        # (A count that differs is reported above.)
        for it, fr in zip(frames, case.processed, strict=False):
            payload = case.data[fr.header_end : fr.end] if fr.length else b""
            expect(
                f"frame {it.show('msglog.index')} payload",
                it.value("msglog.payload") or "",
                payload.hex(),
            )
            expect(
                f"frame {it.show('msglog.index')} text",
                it.show("msglog.text") or "",
                readable(payload),
            )
            if two_pass:
                k = case.processed.index(fr)
                expect(
                    f"frame {k + 1} reply in",
                    it.number("msglog.reply_in"),
                    case.reply_packets[k].number,
                )
        ignored = sum(
            len(f.get("value")) // 2
            for it in got.items
            for f in it.fields.get("msglog.ignored", [])
        )
        expect("bytes not processed", ignored, case.ignored())
        known = {id(it) for it in frames + replies}
        other = [
            it for it in got.items if id(it) not in known and "msglog.ignored" not in it.fields
        ]
        expect("other items", [sorted(it.fields) for it in other], [])

    # Replies.
    expect(
        "reply bytes", bytes(it.number("msglog.reply") for it in replies).hex(), case.replies.hex()
    )
    for k, it in enumerate(replies):
        expect(f"reply {k + 1} answers frame", it.number("msglog.reply.index"), k + 1)
        meaning = {0x00: "success", 0xFF: "failure"}.get(case.replies[k])
        expect(
            f"reply {k + 1} meaning",
            meaning in (it.fields["msglog.reply"][0].get("showname") or ""),
            True,
        )
        if case.limit and case.replies[k] == 0xFF:
            continue
        expect(f"reply {k + 1} answers tag", it.number("msglog.reply.tag"), case.processed[k].tag)
        # The frame is shown in the packet it ends in, or without reassembly
        # in the packet where the state table could judge it.
        shown_in = case.frame_packets[k] if reassembled else case.judged_packets[k]
        expect(f"reply {k + 1} answers packet", it.number("msglog.reply.to"), shown_in.number)
        expect(
            f"reply {k + 1} rule",
            it.show("msglog.rule"),
            case.rule if case.replies[k] == 0xFF else None,
        )

    # Expert info.
    experts = [e for it in got.items for e in it.experts]
    for name, severity in experts:
        wanted = "Warning" if name in WARNINGS else "Note" if name in NOTES else "known"
        expect(f"severity of expert info {name}", severity, wanted)
    warnings = {name for name, _ in experts if name in WARNINGS}
    notes = {name for name, _ in experts if name in NOTES}
    if case.limit:
        expect("warnings", warnings - {"out_of_order"}, case.expected_warnings() - {"out_of_order"})
        expect("0xFF note", "rejected" in notes, 0xFF in case.replies)
    else:
        expect("warnings", warnings, case.expected_warnings())
        truncated = {"truncated"} if not reassembled and "truncated" in notes else set()
        expect("notes", notes, case.expected_notes() | truncated)
        expect(
            "0xFF notes",
            sum(1 for name, _ in experts if name == "rejected"),
            case.replies.count(0xFF),
        )
    return problems


def compare_passes(
    one: dict[int, Decoded], two: dict[int, Decoded], labels: dict[int, str]
) -> list[str]:
    """One pass and two passes must show the same, but for the reply links."""

    def summary(d: Decoded) -> list[tuple]:
        return [
            (
                it.packet,
                sorted(
                    (name, f.get("show"), f.get("value"))
                    for name, fs in it.fields.items()
                    for f in fs
                    if name != "msglog.reply_in"
                ),
            )
            for it in d.items
        ]

    return [
        f"{labels.get(port, port)}: one pass and two passes differ"
        for port in sorted(set(one) | set(two))
        if summary(one.get(port, Decoded())) != summary(two.get(port, Decoded()))
    ]


# ---------------------------------------------------------------- extra captures


def raw_connection(
    label: str, client_port: int, server_port: int, exchange: list[tuple[str, bytes]]
) -> tuple[Connection, Case]:
    """A connection that is not a vector: ("client"|"server", bytes) segments."""
    conn = Connection((CLIENT_IP, client_port), (SERVER_IP, server_port))
    for side, data in exchange:
        (conn.client_sends if side == "client" else conn.server_sends)(data)
    conn.client_closes()
    conn.server_closes()
    return conn, Case(label, client_port, server_port, msglog=False)


#: TCP streams on OTHER_PORT the heuristic must not claim.
NOT_MSGLOG = {
    "HTTP request": [
        ("client", b"GET / HTTP/1.1\r\nHost: example\r\n\r\n"),
        ("server", b"HTTP/1.1 204 No Content\r\n\r\n"),
    ],
    "TLS ClientHello start": [
        ("client", bytes.fromhex("160301002e0100002a0303") + bytes(38)),
        ("server", bytes.fromhex("15030100020228")),
    ],
    "DNS over TCP": [
        ("client", bytes.fromhex("001c12340100000100000000000003777777076578616d706c6500000100")),
        ("server", b"\x00"),
    ],
    "01 and a length, then junk": [
        ("client", bytes.fromhex("010500") + b"hello" + b"\x99\x98"),
        ("server", b"\x00"),
    ],
    "01 and a length past the segment": [
        ("client", bytes.fromhex("01ff00") + b"abc"),
        ("server", b"\x00"),
    ],
    "an empty NAME": [("client", bytes.fromhex("010000")), ("server", b"\xff")],
    "the server speaks first": [
        ("server", b"\x00"),
        ("client", bytes.fromhex("0106004d7955736572")),
        ("server", b"\x00"),
    ],
    "NAME then a stray tag": [
        ("client", bytes.fromhex("010300616263") + b"\x05"),
        ("server", b"\x00"),
    ],
}

#: Vectors the heuristic finds on OTHER_PORT: their client's first segment is
#: a whole NAME (and what may follow it).
HEURISTIC_FOUND = [
    "happy-one-message",
    "pipelined-ten-messages",
    "msg-before-pass",
    "name-twice",
    "password-b",
    "close-with-reference-length",
    "utf8-message",
    "eof-half-payload",
]
#: Vectors it does not find, by design: a first segment that is not a whole
#: NAME, or has an unknown tag (msglog's own port, or Decode As, shows them).
HEURISTIC_MISSED = {
    "happy-one-message": "fields",
    "msg-before-name": "whole",
    "name-empty": "whole",
    "unknown-ff-in-p": "whole",
}


def truncated_connection(client_port: int) -> tuple[Connection, Case]:
    """A segment cut short by the snapshot length, then one more segment."""
    conn = Connection((CLIENT_IP, client_port), (SERVER_IP, MSGLOG_PORT))
    first = (
        bytes.fromhex("0106004d79557365720201004103640078")
        + b"x" * 99
        + bytes.fromhex("030500616674657203")
    )
    conn.client_sends(first, captured=40)
    conn.server_sends(b"\x00\x00\x00\x00")
    conn.client_sends(bytes.fromhex("050061") + b"gain")
    conn.server_sends(b"\x00")
    conn.client_closes()
    conn.server_closes()
    return conn, Case(
        "cut by the snapshot length", client_port, MSGLOG_PORT, custom=check_truncated
    )


def check_truncated(case: Case, got: Decoded) -> list[str]:
    """Frames up to the cut, the cut frame shown in part, nothing guessed after it."""
    problems = []
    facts = [frame_facts(it) for it in got.items if it.show("msglog.index") is not None]
    if [(f["index"], f["tag"], f["length"]) for f in facts] != [(1, 1, 6), (2, 2, 1), (3, 3, 100)]:
        problems.append(f"{case.label}: frames {facts}")
    cut = [it for it in got.items if it.number("msglog.index") == 3]
    if not cut or len(cut[0].value("msglog.payload") or "") // 2 != 40 - 16:
        problems.append(f"{case.label}: the cut frame's payload should be its 24 captured bytes")
    if not cut or ("truncated", "Note") not in cut[0].experts:
        problems.append(f"{case.label}: the cut frame has no note that it is incomplete")
    uncaptured = [
        it.number("msglog.uncaptured") for it in got.items if it.show("msglog.uncaptured")
    ]
    if uncaptured != [9, 7]:
        problems.append(f"{case.label}: bytes not decoded {uncaptured}, want [9, 7]")
    replies = [
        (it.number("msglog.reply.index"), it.number("msglog.reply.tag"))
        for it in got.items
        if it.show("msglog.reply")
    ]
    if replies != [(1, 1), (2, 2), (3, 3), (4, None), (5, None)]:
        problems.append(f"{case.label}: replies {replies}")
    warnings = [e for it in got.items for e in it.experts if e[1] == "Warning"]
    if warnings:
        problems.append(f"{case.label}: warnings {warnings}")
    return problems


def misbehaving_server(client_port: int) -> tuple[Connection, Case]:
    """A server that accepts what the spec rejects, sends a byte that is no reply,
    and replies after its 0xFF."""
    conn = Connection((CLIENT_IP, client_port), (SERVER_IP, MSGLOG_PORT))
    conn.client_sends(bytes.fromhex("01010075"))  # NAME "u"
    conn.server_sends(b"\x00")
    conn.client_sends(bytes.fromhex("02010042"))  # PASS "B": the spec says 0xFF
    conn.server_sends(b"\x00\x7e")  # 0x00 to it, then no reply at all
    conn.server_sends(b"\xff\x00")  # a 0xFF to nothing, then more
    conn.client_closes()
    conn.server_closes()
    return conn, Case(
        "a server that breaks the spec", client_port, MSGLOG_PORT, custom=check_misbehaving
    )


def check_misbehaving(case: Case, got: Decoded) -> list[str]:
    replies = [it for it in got.items if it.show("msglog.reply") is not None]
    warnings = [[name for name, severity in it.experts if severity == "Warning"] for it in replies]
    want = [[], ["bad_reply"], ["bad_reply"], ["bad_reply"], ["bad_reply"]]
    problems = []
    if warnings != want:
        problems.append(f"{case.label}: warnings per reply {warnings}, want {want}")
    texts = [m.get("show") for it in replies for m in it.fields.get("_ws.expert.message", [])]
    for needle in (
        "0x00 to PASS #2",
        "0x7E is not a reply",
        "Reply to no frame",
        "after its closing reply",
    ):
        if not any(needle in t for t in texts):
            problems.append(f"{case.label}: no expert info says {needle!r}: {texts}")
    return problems


def full_server(client_port: int) -> tuple[Connection, Case]:
    """A server at its connection limit: 0xFF before any frame, and a client
    that sends its NAME all the same."""
    conn = Connection((CLIENT_IP, client_port), (SERVER_IP, MSGLOG_PORT))
    conn.server_sends(b"\xff")
    conn.server_closes()
    conn.client_sends(bytes.fromhex("01010075"))
    conn.client_closes()
    return conn, Case(
        "a server at its connection limit", client_port, MSGLOG_PORT, custom=check_full
    )


def check_full(case: Case, got: Decoded) -> list[str]:
    experts = sorted(e for it in got.items for e in it.experts)
    want = [("not_processed", "Note"), ("rejected", "Note"), ("sent_after_reject", "Warning")]
    problems = [] if experts == want else [f"{case.label}: expert info {experts}, want {want}"]
    texts = [m.get("show") for it in got.items for m in it.fields.get("_ws.expert.message", [])]
    if not any("before any complete frame" in t for t in texts):
        problems.append(f"{case.label}: the 0xFF is not explained as a refusal: {texts}")
    if [it.show("msglog.index") for it in got.items if it.show("msglog.index")]:
        problems.append(
            f"{case.label}: the NAME sent after the refusal is shown as a processed frame"
        )
    return problems


# ---------------------------------------------------------------- main


def load_vectors() -> list[dict]:
    vectors = []
    for path in VECTOR_FILES:
        for vector in json.loads(path.read_text())["vectors"]:
            vector["large"] = path.name != "sessions.json"
            vectors.append(vector)
    return vectors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--keep", type=Path, help="write the captures to this directory and keep them"
    )
    args = parser.parse_args()
    if shutil.which("tshark") is None:
        print("FAIL: tshark is not installed (Debian: apt-get install tshark)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="msglog-wireshark-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        env = tshark_env(home)
        problems = check_loaded(env)
        if problems:
            for p in problems:
                print(f"FAIL: {p}", file=sys.stderr)
            return 1

        # The vectors on port 5555, every split, interleaved; plus the cut packet.
        vectors = load_vectors()
        conns, cases = [], []
        port = 10000
        for vector in vectors:
            for split in LARGE_SPLITS if vector["large"] else SPLITS:
                conn, case = vector_connection(vector, split, port, MSGLOG_PORT)
                conns.append(conn)
                cases.append(case)
                port += 1
        for make in (truncated_connection, misbehaving_server, full_server):
            conn, case = make(port)
            conns.append(conn)
            cases.append(case)
            port += 1
        main_pcap = out / "vectors.pcap"
        write_pcap(main_pcap, interleave(conns))
        packets = sum(len(c.packets) for c in conns)

        # The heuristic on another port.
        by_id = {v["id"]: v for v in vectors}
        h_conns, h_cases = [], []
        for vid in HEURISTIC_FOUND:
            conn, case = vector_connection(by_id[vid], "whole", port, OTHER_PORT)
            case.label = f"heuristic: {case.label}"
            h_conns.append(conn)
            h_cases.append(case)
            port += 1
        for vid, split in HEURISTIC_MISSED.items():
            conn, case = vector_connection(by_id[vid], split, port, OTHER_PORT)
            case.label, case.msglog = f"heuristic, not found by design: {case.label}", False
            h_conns.append(conn)
            h_cases.append(case)
            port += 1
        for label, exchange in NOT_MSGLOG.items():
            conn, case = raw_connection(
                f"heuristic, not msglog: {label}", port, OTHER_PORT, exchange
            )
            h_conns.append(conn)
            h_cases.append(case)
            port += 1
        heuristic_pcap = out / "heuristic.pcap"
        write_pcap(heuristic_pcap, interleave(h_conns))

        problems = []
        one, errors = decode(main_pcap, env)
        problems += errors
        two, errors = decode(main_pcap, env, "-2")
        problems += errors
        flat, errors = decode(main_pcap, env, "-o", "tcp.desegment_tcp_streams:FALSE")
        problems += errors
        heur, errors = decode(heuristic_pcap, env)
        problems += errors

        labels = {c.client_port: c.label for c in cases}
        for case in cases:
            if case.custom:
                for how, decoded in (
                    ("", one),
                    ("in two passes: ", two),
                    ("without reassembly: ", flat),
                ):
                    problems += [
                        how + p for p in case.custom(case, decoded.get(case.client_port, Decoded()))
                    ]
                continue
            problems += check_case(case, one.get(case.client_port, Decoded()), two_pass=False)
            problems += check_case(case, two.get(case.client_port, Decoded()), two_pass=True)
            problems += [
                f"without reassembly: {p}"
                for p in check_case(
                    case, flat.get(case.client_port, Decoded()), two_pass=False, reassembled=False
                )
            ]
        problems += compare_passes(one, two, labels)
        for case in h_cases:
            problems += check_case(case, heur.get(case.client_port, Decoded()), two_pass=False)

        if problems:
            for p in problems[:60]:
                print(f"FAIL: {p}", file=sys.stderr)
            if len(problems) > 60:
                print(f"... and {len(problems) - 60} more", file=sys.stderr)
            print(
                f"FAIL: {len(problems)} mismatches between msglog.lua's decoding and the vectors",
                file=sys.stderr,
            )
            return 1
        found = sum(1 for c in h_cases if c.msglog)
        from_vectors = sum(1 for c in cases if not c.custom)
        print(
            f"ok: {from_vectors} connections from {len(vectors)} vectors ({packets} packets) "
            "decoded as the vectors say, in one pass, in two and without TCP reassembly;\n"
            "ok: a packet cut short, a server that breaks the spec and a full server shown as "
            "they should be;\n"
            f"ok: heuristic on port {OTHER_PORT}: {found} msglog connections found, "
            f"{len(h_cases) - found} other streams left alone"
        )
        return 0


if __name__ == "__main__":
    sys.exit(main())
