#!/usr/bin/env python3
"""Lists the spec requirements that lack an implementation or a test
citation, from `duvet report --json FILE`. Usage:
    duvet report --json /tmp/duvet.json; python3 scripts/duvet-missing.py /tmp/duvet.json
"""
import json
import sys

data = json.load(open(sys.argv[1] if len(sys.argv) > 1 else "/tmp/duvet.json"))
annotations = data["annotations"]
missing = 0
for req, status in sorted(data["statuses"].items(), key=lambda kv: int(kv[0])):
    a = annotations[int(req)]
    if a.get("type") != "SPEC":
        continue
    lacks = [k for k in ("citation", "test") if not status.get(k)]
    if status.get("exception"):
        continue
    if lacks:
        missing += 1
        text = " ".join(a["comment"].split())
        print(f"#{a['target_section']} [{', '.join(lacks)}]: {text}")
print(f"{missing} requirements lack a citation or a test")
