#!/usr/bin/env bash
# Checks contrib/systemd/msglog.service with `systemd-analyze verify` (which
# needs no running systemd): every setting known, the command executable,
# the man page of Documentation= found. verify exits 0 on settings it only
# warns about, so any output at all fails the check.
#
#   contrib/systemd/check_unit.sh [MSGLOG_BINARY]   (default: target/debug/msglog)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$(realpath "${1:-target/debug/msglog}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/man/man1"
"$bin" man > "$work/man/man1/msglog.1"
# The unit as installed, with ExecStart= pointing at this build.
sed "s|/usr/local/bin/msglog|$bin|" contrib/systemd/msglog.service > "$work/msglog.service"
if ! out=$(MANPATH="$work/man" systemd-analyze verify "$work/msglog.service" 2>&1) || [ -n "$out" ]; then
    printf 'systemd-analyze verify: msglog.service has problems:\n%s\n' "$out" >&2
    exit 1
fi
echo "msglog.service: systemd-analyze verify found nothing to complain about"
