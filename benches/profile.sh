#!/usr/bin/env bash
# Where a request's CPU time goes in `serve`, by layer (issue #19): `perf record` (cpu-clock,
# DWARF call stacks) of the server process while `loadtest` sends the seed scenario's CREATE
# to /mutate at a fixed rate; each sample counts for the layer of the innermost frame on its
# stack that names one (a malloc inside the engine is the engine's, a `sendmsg` under rustls
# is the kernel's network I/O). With the server's CPU time per request over the same window,
# each layer's share becomes microseconds per request.
#
#   CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
#     cargo build --release --bin kubevirt-net-webhook --example loadtest
#   benches/profile.sh [BIN] [SECONDS] [RATE]
#
# BIN defaults to target/release/kubevirt-net-webhook. `floor` is examples/floor.rs (built with
# `--example floor`); `empty` is the same-stack empty webhook of `loadtest --compare`, served
# by the loadtest binary, to split what our stack costs beyond the floor. Line tables are
# needed for the stacks through inlined code; they do not change the code. PERF_DATA=FILE
# keeps the samples. Needs `perf` (linux-perf) and a quiet machine: the load generator runs
# beside the server.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/kubevirt-net-webhook}
seconds=${2:-10}
rate=${3:-5000}
loadtest=target/release/examples/loadtest
dir=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT INT TERM

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
listen=127.0.0.1:$(port)
admin=127.0.0.1:$(port)
"$loadtest" --write-certs "$dir" >/dev/null
if [ "$bin" = floor ]; then
  # The independent floor of `loadtest --compare` (examples/floor.rs), for comparison.
  target/release/examples/floor --tls-cert "$dir/tls.crt" --tls-key "$dir/tls.key" \
    --listen "$listen" &
  pid=$!
  sleep 1
elif [ "$bin" = empty ]; then
  # Logs as `deploy/` does (JSON, a line per request), to /dev/null.
  "$loadtest" --serve-empty "$listen" "$dir" --logs json 2>/dev/null &
  pid=$!
  sleep 1
else
  LOG_FORMAT=json MIMALLOC_PURGE_DELAY=0 "$bin" serve --tls-cert "$dir/tls.crt" \
    --tls-key "$dir/tls.key" --listen "$listen" --admin-listen "$admin" \
    --nads tests/data/cases --vms tests/data/cases 2>/dev/null &
  pid=$!
  for _ in $(seq 100); do
    curl -sf "http://$admin/readyz" >/dev/null && break
    sleep 0.1
  done
fi
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
# Prints the requests answered.
load() {
  "$loadtest" --addr "$listen" --ca "$dir/ca.crt" --rate "$rate" --duration "$1" | awk '{ print $1 }'
}
load 3s >/dev/null # warm: connections open, buffers grown, metric series created
# CPU per request without perf attached (its stack copies cost the process too)...
before_cpu=$(cpu_ticks)
n=$(load "${seconds}s")
after_cpu=$(cpu_ticks)
# ...then the same load again, sampled.
perf record -q -e cpu-clock -F 1999 --call-graph dwarf,16384 -p "$pid" -o "$dir/perf.data" \
  -- sleep "$seconds" 2>/dev/null &
perf_pid=$!
load "${seconds}s" >/dev/null
wait "$perf_pid" || true
[ -n "${PERF_DATA:-}" ] && cp "$dir/perf.data" "$PERF_DATA"
hz=$(getconf CLK_TCK)
us_per_request=$(awk -v t=$((after_cpu - before_cpu)) -v hz="$hz" -v n="$n" \
  'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
echo "requests: $n in ${seconds}s; server CPU per request (utime+stime): $us_per_request µs"

perf script -i "$dir/perf.data" -F comm,ip,sym,dso 2>/dev/null | awk -v per="$us_per_request" '
  # The layer of a frame, if it names one. Innermost first: the first frame of a sample that
  # names a layer decides (a malloc inside the engine is the engine'"'"'s).
  function layer(f) {
    if (f ~ /kubevirt_net_webhook::engine::/) return "engine (rules, patch)"
    if (f ~ /more_values_than/) return "body: JSON value count"
    if (f ~ /admission::parse|admission::read|OnePass|one_pass|admission::\{impl#|admission::_::|decode_object|SliceRead|StrRead/) return "body decode (AdmissionReview)"
    if (f ~ /to_vec|Answer::wire|with_patch|base64/) return "response encode"
    if (f ~ /tracing_subscriber|tracing_core|logfmt/) return "logging (JSON line)"
    if (f ~ /prometheus_client|Metrics|observe_/) return "metrics"
    if (f ~ /gate::|decision_threads|mpsc|oneshot/) return "gate + decision-thread handoff"
    if (f ~ /Parsed::answer|Read::answer|admission::decide|admission::run|admission::enforce|Facts::of/) return "admission (outside the engine)"
    if (f ~ /rustls|ring_core|(^|[^a-z_])ring::/) return "TLS (rustls)"
    if (f ~ /hyper|httparse|http::|axum|tower|matchit|h2::/) return "HTTP (hyper, axum)"
    if (f ~ /server::conn|server::tls/) return "connections (accept, limits)"
    if (f ~ /server::|admission::/) return "handler (other)"
    if (f ~ /Driver::turn|park_timeout|park_internal|park_condvar|park_driver|Parker/) return "async runtime: waiting for work"
    if (f ~ /tokio|mio/) return "async runtime (tokio)"
    return ""
  }
  # The path of a symbol without generic arguments: `Dispatcher<..., TlsStream<...>>::poll`
  # is hyper'"'"'s, not rustls'"'"'; a qualified `<T as Trait>::f` keeps T and Trait.
  function path(f,    out, stack, i, c, prev, keep) {
    out = ""; stack = ""; prev = ""
    for (i = 1; i <= length(f); i++) {
      c = substr(f, i, 1)
      keep = (stack !~ /g/)
      if (c == "<") {
        stack = stack (prev ~ /[A-Za-z0-9_]/ ? "g" : "q")
        if (keep && substr(stack, length(stack)) == "q") out = out c
      } else if (c == ">" && stack != "") {
        if (keep) out = out c
        stack = substr(stack, 1, length(stack) - 1)
      } else if (keep) out = out c
      prev = c
    }
    return out
  }
  function flush() {
    if (nframes == 0) return
    got = ""
    for (i = 1; i <= nframes && got == ""; i++) got = layer(path(frames[i]))
    if (leaf_kernel) {
      # Time in the kernel: the wake-ups of a handoff are the handoff'"'"'s; socket work is
      # network I/O whoever asked for it.
      if (got != "gate + decision-thread handoff" && got != "async runtime: waiting for work" && got !~ /logging/) {
        net = 0
        for (i = 1; i <= nframes; i++) if (frames[i] ~ /tcp_|sock_|inet_|skb|sys_sendto|sys_recvfrom|sys_write|sys_read|sys_writev/) net = 1
        got = net ? "kernel: network I/O" : (got == "" ? "kernel: other" : got)
      }
    }
    # A decision thread waiting or being woken is the handoff'"'"'s.
    if (thread ~ /^decision-/ && (got == "" || got ~ /waiting|kernel: other/)) got = "gate + decision-thread handoff"
    if (got == "") got = (frames[1] ~ /mi_|_mi_/ ? "allocator (unattributed)" : "other")
    count[got]++; total++
    nframes = 0
  }
  /^$/ { flush(); next }
  /^[^ \t]/ { thread = $1; next }
  {
    $1 = ""; sub(/^ +/, ""); f = $0
    if (nframes == 0) leaf_kernel = (f ~ /kernel\.kallsyms/)
    frames[++nframes] = f
  }
  END {
    flush()
    printf "%-48s %7s %7s\n", "layer", "share", "µs/req"
    n = 0
    for (k in count) order[++n] = k
    # by share, largest first
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (count[order[j]] > count[order[i]]) { t = order[i]; order[i] = order[j]; order[j] = t }
    for (i = 1; i <= n; i++) printf "%-48s %6.1f%% %7.1f\n", order[i], 100 * count[order[i]] / total, per * count[order[i]] / total
    printf "%-48s %7d samples\n", "total", total
  }'
