#!/usr/bin/env bash
# Fuzz smoke test: builds the fuzz targets and runs each for a bounded time.
#
#   fuzz/smoke.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default 60); TARGETs default to all four. Exits
# non-zero on the first crash, after printing the failed invariant, the
# crashing input in hex, and the command that reproduces it. Each run starts
# from the committed seeds (fuzz/corpus/<target>/seed-*) in a scratch
# corpus, so a CI run leaves the tree clean.
set -euo pipefail

seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(frame_parser session engine record_codec)
fi
case "$seconds" in
    '' | *[!0-9]*) echo "smoke.sh: SECONDS must be a whole number, got '$seconds'" >&2; exit 2 ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# cargo fuzz needs nightly features (sanitizers, -Z flags). Use the nightly
# toolchain where rustup has one (as fuzz/rust-toolchain.toml does for
# commands run in fuzz/); otherwise let the stable compiler accept them,
# which is what nightly would do here, and keep rustup from looking for the
# nightly that fuzz/rust-toolchain.toml names.
if cargo +nightly --version >/dev/null 2>&1; then
    toolchain=(+nightly)
else
    toolchain=()
    export RUSTC_BOOTSTRAP=1
    RUSTUP_TOOLCHAIN="$(rustup show active-toolchain 2>/dev/null | cut -d' ' -f1)" || true
    [ -n "${RUSTUP_TOOLCHAIN:-}" ] && export RUSTUP_TOOLCHAIN || unset RUSTUP_TOOLCHAIN
    echo "smoke.sh: no nightly toolchain; using $(rustc --version) with RUSTC_BOOTSTRAP=1"
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "smoke.sh: installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked
fi

dict_for() {
    case "$1" in
        record_codec) echo fuzz/record.dict ;;
        *) echo fuzz/frame.dict ;;
    esac
}

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

for target in "${targets[@]}"; do
    echo "smoke.sh: building $target"
    if ! cargo "${toolchain[@]}" fuzz build "$target" >"$scratch/build.log" 2>&1; then
        tail -n 40 "$scratch/build.log" >&2
        echo "smoke.sh: building $target failed" >&2
        exit 1
    fi
done

status=0
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target"
    log="$scratch/$target.log"
    echo "smoke.sh: $target for ${seconds}s"
    if cargo "${toolchain[@]}" fuzz run "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -dict="$(dict_for "$target")" \
        -print_final_stats=1 >"$log" 2>&1; then
        # The last status line: executions, coverage (cov), features (ft).
        grep -E '^#[0-9]+' "$log" | tail -n 1 | sed "s/^/smoke.sh: $target: /"
        continue
    fi
    status=1
    echo "smoke.sh: $target FAILED" >&2
    grep -E "panicked at|invariant broken|ERROR: libFuzzer|SUMMARY" "$log" | head -n 8 >&2 || tail -n 30 "$log" >&2
    artifact="$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -n 1 | sed 's/Test unit written to //')"
    if [ -n "$artifact" ] && [ -f "$artifact" ]; then
        echo "smoke.sh: crashing input ($(wc -c <"$artifact") bytes) in hex:" >&2
        od -An -tx1 -v "$artifact" | tr -s ' ' | sed 's/^ //' >&2
        echo "smoke.sh: as the target sees it:" >&2
        # `fuzz fmt` prints the Debug form, one byte per line, on stderr.
        cargo "${toolchain[@]}" fuzz fmt "$target" "$artifact" 2>&1 |
            sed -n '/Output of `std::fmt::Debug`/,$p' | tail -n +2 | tr -s ' \n' ' ' |
            cut -c 1-4000 >&2 || true
        echo >&2
        echo "smoke.sh: reproduce with: cargo +nightly fuzz run $target $artifact (from the repository root)" >&2
    else
        tail -n 40 "$log" >&2
    fi
    break
done
exit "$status"
