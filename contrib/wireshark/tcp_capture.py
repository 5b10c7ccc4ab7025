"""Classic pcap files of made-up TCP connections (standard library only).

Used by check_dissector.py to turn the spec's session vectors into captures
that tshark reads like any other: Ethernet, IPv4 and TCP headers with correct
checksums, a three-way handshake, sequence and acknowledgement numbers that
add up, and FINs. Nothing here touches the network.

    conn = Connection(("10.0.0.1", 40000), ("10.0.0.2", 5555))
    conn.client_sends(b"\\x01\\x02\\x00hi")
    conn.server_sends(b"\\x00")
    conn.client_closes()
    write_pcap(path, interleave([conn]))
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from pathlib import Path

PCAP_MAGIC = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
#: The snapshot length in the file header; a packet cut shorter says so in
#: its own record.
SNAPLEN = 262144
#: The largest TCP payload of one segment on an Ethernet link.
MSS = 1460

TCP_FIN, TCP_SYN, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x08, 0x10


@dataclass
class Packet:
    """One captured packet: its bytes on the wire and how many were kept."""

    data: bytes
    captured: int
    #: Its number in the capture file, from 1; set by :func:`interleave`.
    number: int = 0


class Connection:
    """One TCP connection between a client and a server endpoint.

    Every segment acknowledges all the other side has sent so far, so
    Wireshark's sequence analysis finds nothing to complain about.
    """

    def __init__(self, client: tuple[str, int], server: tuple[str, int]) -> None:
        self.client = client
        self.server = server
        self.packets: list[Packet] = []
        # Initial sequence numbers: arbitrary, different per side.
        self._next_seq = {"client": 1_000_000 + client[1], "server": 7_000_000 + server[1]}
        self._segment("client", b"", TCP_SYN, ack=False)
        self._segment("server", b"", TCP_SYN | TCP_ACK)
        self._segment("client", b"", TCP_ACK)

    def client_sends(self, data: bytes, captured: int | None = None) -> Packet:
        """One client segment with ``data``; ``captured`` payload bytes kept if given."""
        return self._segment("client", data, TCP_PSH | TCP_ACK, captured=captured)

    def server_sends(self, data: bytes) -> Packet:
        """One server segment with ``data``."""
        return self._segment("server", data, TCP_PSH | TCP_ACK)

    def client_closes(self) -> Packet:
        return self._segment("client", b"", TCP_FIN | TCP_ACK)

    def server_closes(self) -> Packet:
        return self._segment("server", b"", TCP_FIN | TCP_ACK)

    def _segment(
        self, side: str, payload: bytes, flags: int, ack: bool = True, captured: int | None = None
    ) -> Packet:
        other = "server" if side == "client" else "client"
        src, dst = (self.client, self.server) if side == "client" else (self.server, self.client)
        seq = self._next_seq[side]
        ack_number = self._next_seq[other] if ack else 0
        # SYN and FIN take one sequence number each.
        self._next_seq[side] = (
            seq + len(payload) + (1 if flags & (TCP_SYN | TCP_FIN) else 0)
        ) % 2**32
        frame = _ethernet(_ipv4(src[0], dst[0], _tcp(src, dst, seq, ack_number, flags, payload)))
        kept = len(frame) if captured is None else len(frame) - len(payload) + captured
        packet = Packet(frame, kept)
        self.packets.append(packet)
        return packet


def interleave(connections: list[Connection]) -> list[Packet]:
    """The connections' packets taken in turn, one from each; numbers them."""
    queues = [list(c.packets) for c in connections]
    out: list[Packet] = []
    while any(queues):
        for queue in queues:
            if queue:
                out.append(queue.pop(0))
    for number, packet in enumerate(out, 1):
        packet.number = number
    return out


def write_pcap(path: Path, packets: list[Packet]) -> None:
    """Writes the packets as a pcap file, one millisecond apart."""
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))
        for i, packet in enumerate(packets):
            seconds, millis = divmod(i, 1000)
            kept = packet.data[: packet.captured]
            out.write(
                struct.pack(
                    "<IIII", 1_700_000_000 + seconds, millis * 1000, len(kept), len(packet.data)
                )
            )
            out.write(kept)


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _tcp(
    src: tuple[str, int], dst: tuple[str, int], seq: int, ack: int, flags: int, payload: bytes
) -> bytes:
    header = struct.pack("!HHIIBBHHH", src[1], dst[1], seq, ack, 5 << 4, flags, 65535, 0, 0)
    pseudo = (
        ipaddress.IPv4Address(src[0]).packed
        + ipaddress.IPv4Address(dst[0]).packed
        + struct.pack("!BBH", 0, 6, len(header) + len(payload))
    )
    checksum = _checksum(pseudo + header + payload)
    return header[:16] + struct.pack("!H", checksum) + header[18:] + payload


def _ipv4(src: str, dst: str, segment: bytes) -> bytes:
    total = 20 + len(segment)
    if total > 0xFFFF:
        raise ValueError(f"a {len(segment)}-byte TCP segment does not fit in one IPv4 packet")
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        total,
        0,
        0x4000,  # don't fragment
        64,
        6,  # TCP
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return header[:10] + struct.pack("!H", _checksum(header)) + header[12:] + segment


def _ethernet(packet: bytes) -> bytes:
    return bytes.fromhex("020000000002020000000001") + struct.pack("!H", 0x0800) + packet
