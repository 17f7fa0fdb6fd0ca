#!/usr/bin/env bash
# The release build the image ships (deploy/Containerfile): profile-guided (PGO).
#
#   deploy/pgo-build.sh            # prints the path of the binary it built
#
# 1. Builds `kubevirt-net-webhook` instrumented (`-Cprofile-generate`) into target/pgo-train.
# 2. Trains it on this repository's own scenarios, on loopback, no cluster: `serve` with the
#    test cases' NADs and VMs (tests/data/cases), loaded by examples/loadtest.rs with the
#    CREATE of each case's VM on /mutate and on /validate, saturated and at 5,000 req/s, then
#    SIGTERM (it drains, exits and writes its profile); and `review` of every case.
# 3. Merges the profiles with the `llvm-profdata` of rustc's own LLVM (rustup component
#    `llvm-tools`) and builds again with `-Cprofile-use` into target/pgo.
#
# Same code, same tests: PGO only changes how the compiler lays out and inlines it. What it
# buys is in benches/README ("The profile-guided build"). Needs rustup's llvm-tools
# component (`rustup component add llvm-tools`), curl, and two free loopback ports (18443
# and 18444, or PGO_PORT and the next). CARGO_FLAGS replaces the cargo flags (`--locked`).
set -euo pipefail
cd "$(dirname "$0")/.."
flags=${CARGO_FLAGS:---locked}
profdata=$(find "$(rustc --print sysroot)/lib/rustlib" -name llvm-profdata -type f | head -n 1)
if [ -z "$profdata" ]; then
  echo "llvm-profdata not found: rustup component add llvm-tools" >&2
  exit 2
fi
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir "$work/build" "$work/train"

# Build scripts and proc macros are instrumented too and write their profiles while the
# crate builds: into a directory of their own, not the training's.
# shellcheck disable=SC2086
RUSTFLAGS="-Cprofile-generate=$work/build" \
  cargo build --release $flags --bin kubevirt-net-webhook --target-dir target/pgo-train >&2
# shellcheck disable=SC2086
cargo build --release $flags --example loadtest >&2
trained=target/pgo-train/release/kubevirt-net-webhook
loadtest=target/release/examples/loadtest

export LLVM_PROFILE_FILE="$work/train/%p-%m.profraw"
"$loadtest" --write-certs "$work/certs" >/dev/null
# Loopback ports for the training server; PGO_PORT moves them if these are taken.
port=${PGO_PORT:-18443}
listen=127.0.0.1:$port
admin=127.0.0.1:$((port + 1))
"$trained" serve --tls-cert "$work/certs/tls.crt" --tls-key "$work/certs/tls.key" \
  --nads tests/data/cases --vms tests/data/cases --listen "$listen" --admin-listen "$admin" \
  --shutdown-delay 0s --log-format json 2>/dev/null &
pid=$!
for _ in $(seq 1 300); do
  curl -sf "http://$admin/readyz" >/dev/null && break
  sleep 0.1
done
if ! curl -sf "http://$admin/readyz" >/dev/null; then
  echo "the instrumented server did not get ready on $listen" >&2
  exit 1
fi
for case in tests/data/cases/*.yaml; do
  for endpoint in mutate validate; do
    for rate in "" "--rate 5000"; do
      # shellcheck disable=SC2086
      "$loadtest" --addr "$listen" --ca "$work/certs/ca.crt" --case "$case" \
        --endpoint "$endpoint" --duration 3s $rate >&2
    done
  done
done
kill -TERM "$pid"
wait "$pid"
pid=
for case in tests/data/cases/*.yaml; do
  "$trained" review -f "$case" >/dev/null 2>&1 || true
done

"$profdata" merge -o "$work/merged.profdata" "$work/train"
# shellcheck disable=SC2086
RUSTFLAGS="-Cprofile-use=$work/merged.profdata" \
  cargo build --release $flags --bin kubevirt-net-webhook --target-dir target/pgo >&2
echo target/pgo/release/kubevirt-net-webhook
