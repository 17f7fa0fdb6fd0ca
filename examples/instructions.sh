#!/usr/bin/env bash
# Instructions per /mutate request through the whole server stack (TLS included), counted by
# valgrind's callgrind: a noise-free figure, unlike wall-clock numbers on a shared machine.
#
#   examples/instructions.sh [BINARY] [N]
#
# Runs BINARY (default target/release/kubevirt-net-webhook) `serve` under callgrind twice,
# sending 200 and then 200+N seed-scenario requests over 4 keep-alive TLS connections
# (examples/loadtest.rs --addr), and prints (Ir(200+N) - Ir(200)) / N: start-up, shutdown
# and warm-up cancel out. Loopback only. Needs valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/kubevirt-net-webhook}
n=${2:-2000}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cargo run -q --release --example loadtest -- --write-certs "$dir" >/dev/null
loadtest=target/release/examples/loadtest
ir_of() {
  local requests=$1 port=$2
  valgrind --tool=callgrind --callgrind-out-file="$dir/cg.$requests" --dump-instr=no \
    "$bin" serve --tls-cert "$dir/tls.crt" --tls-key "$dir/tls.key" \
    --nads tests/data/cases --vms tests/data/cases \
    --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$((port + 1))" \
    --shutdown-delay 0s >"$dir/serve.$requests.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 600); do
    curl -sk "https://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  "$loadtest" --addr "127.0.0.1:$port" --ca "$dir/ca.crt" --connections 4 \
    --requests "$requests" --duration 600s >/dev/null
  kill -TERM "$pid"
  wait "$pid" || true
  # Totals of every thread: the `summary:` line of each dump file.
  cat "$dir"/cg."$requests"* | awk '/^summary:/ { s += $2 } END { print s }'
}
base=$(ir_of 200 18443)
more=$(ir_of $((200 + n)) 18453)
echo "$bin: $(( (more - base) / n )) instructions per /mutate request (N=$n)"
