#!/usr/bin/env bash
# Builds herald-fuzz with SanitizerCoverage and runs one target (or all):
#   fuzz/run.sh TARGET [--runs N | --seconds S]      e.g. fuzz/run.sh config --runs 10000000
#   fuzz/run.sh all --seconds 5
# Targets: client-message, ws-frames, rest-query, config. New inputs go to fuzz/corpus/TARGET,
# crashes to fuzz/crashes/. Stable toolchain only: the instrumentation is LLVM's sancov pass.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${HERALD_FUZZ_TARGET_DIR:-$PWD/fuzz/target}"
triple="$(rustc -vV | sed -n 's/^host: //p')"
# --target keeps build scripts and proc macros uninstrumented.
RUSTFLAGS="-C passes=sancov-module -C llvm-args=-sanitizer-coverage-level=3 -C llvm-args=-sanitizer-coverage-trace-pc-guard -C codegen-units=16" \
  cargo build --release --manifest-path fuzz/Cargo.toml --target "$triple" --target-dir "$target_dir"
binary="$target_dir/$triple/release/herald-fuzz"
if [ "${1:-}" = all ]; then
  shift
  for t in client-message ws-frames rest-query config; do "$binary" "$t" "$@"; done
else
  "$binary" "$@"
fi
