#!/usr/bin/env bash
# Mutation testing of the sans-IO core (src/proto): every mutant cargo-mutants
# makes of it must be caught by the pure test suites, or be listed in
# .cargo/mutants.toml with the reason it is equivalent.
#
#   scripts/mutants.sh [FILE...]     # default: every file of src/proto
#
# Slow (every mutant is a rebuild of the crate and a run of the pure tests):
# run it by hand, not in .ci/run. Results land in mutants.out/ (ignored by
# git); the exit status is non-zero when a mutant survived.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || cargo install cargo-mutants --locked
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
    files=(src/proto/*.rs)
fi
args=()
for f in "${files[@]}"; do
    args+=(--file "$f")
done
# The pure suites only: the core's unit tests, the model and chunking
# property tests, the engine's event checks and the spec's vectors. None of
# them needs a socket, so no mutant can pass by a test skipping.
exec cargo mutants "${args[@]}" --profile mutants --timeout 120 \
    -- --lib --test model --test chunking --test engine --test vectors_core
