"""The JSON-lines log read the way Python programs read it.

JSON allows U+0085, U+2028, U+2029 and the bidirectional controls raw in a
string, but ``str.splitlines`` splits at the first three, so a log that
left them raw would come apart into broken records; msglog escapes them.
Run from the repository root, after ``cargo build``:

    python3 -m unittest discover -s clients/python -v
"""

from __future__ import annotations

import json
import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import client  # noqa: E402
from test_client import WAIT, Server  # noqa: E402

# Characters that break lines for `splitlines` or reorder what a person sees.
DANGEROUS = "\u0085\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\x1c\x1d\x1e\x0b\x0c"


class JsonLinesLog(unittest.TestCase):
    def setUp(self) -> None:
        self.server = Server("--log-format", "jsonl")
        self.addCleanup(self.server.stop)

    def test_splitlines_gives_one_line_per_record(self) -> None:
        messages = [f"before{c}after" for c in DANGEROUS] + [DANGEROUS, "plain"]
        with client.client("py\u202eeman", "A", "127.0.0.1", self.server.port, timeout=WAIT) as c:
            for message in messages:
                c.msg(message)
        text = self.server.log.read_bytes().decode("utf-8")
        for c in DANGEROUS:
            self.assertNotIn(c, text, f"U+{ord(c):04X} is raw in the log")
        lines = text.splitlines()
        self.assertEqual(len(lines), len(messages))
        records = [json.loads(line) for line in lines]
        self.assertEqual([r["message"] for r in records], messages)
        self.assertEqual({r["name"] for r in records}, {"py\u202eeman"})


if __name__ == "__main__":
    unittest.main()
