#!/usr/bin/env bash
# Portcullis against nginx, Caddy and HAProxy as TLS-terminating reverse proxies, on this
# machine, in one run.
#
#   bash bench/run.sh                 # from the repo root
#
# Every proxy terminates TLS with the same certificate (ECDSA P-256, or RSA 2048 with
# BENCH_KEY=rsa) and forwards to the same backend (a separate nginx instance answering
# `return 200 "ok\n"` on /, and a 1 MiB file on /1m, over plain HTTP/1.1 keep-alive).
# Each proxy runs one worker (thread) pinned to one CPU (PROXY_CPU); the load generator
# and the backend share the other one (CLIENT_CPU). CPU use is sampled from /proc around
# every run: the proxy's own time, its core's idle time (a proxy-bound run leaves none),
# the load generator's and backend's time, and everyone else's. A run that other
# processes disturbed is repeated (twice at most) and flagged if it still is.
#
# Proxies (BENCH_PROXIES, default "portcullis nginx caddy haproxy node-bare"; one not
# installed is left out with a log line): bench/lib/proxies.sh has the table,
# bench/lib/proxy-*.sh one config per product, with the same TLS versions, suites, groups,
# HSTS, forwarding headers, request id and file access log, where the product can.
# node-bare (bench/node-bare.ts) is not a product: a bare Node https + HTTP/2 server
# forwarding through undici with none of Portcullis's work, the floor under its figures.
#
# Scenarios (the proxies take turns in an order that reverses every round, ROUNDS times):
#   keepalive    wrk -t1 -cCONNS, HTTP/1.1 keep-alive over TLS 1.3: proxied req/s
#   reconnect    the same with `Connection: close`: a new TCP + TLS connection per
#                request. wrk keeps its SSL object across reconnects, so these
#                handshakes are TLS 1.3 *resumptions* (PSK + ECDHE, no certificate
#                signature); the script checks this against nginx's $ssl_session_reused.
#   full-tls13   full TLS 1.3 handshakes (no resumption, no HTTP request), driven by
#                HS_CLIENTS parallel `openssl s_time -new`
#   full-tls12   the same for TLS 1.2 (first round only; BENCH_TLS12=0 skips it)
#   full-tls13-pq / full-tls13-classical   full TLS 1.3 handshakes from bench/full-handshakes.ts
#                offering X25519MLKEM768 (or classical groups only), when a node of BENCH_NODES
#                has ML-KEM; the script records the key shares, HelloRetryRequests and groups.
#   new-conn     new clients: bench/full-handshakes.ts keeps NEW_CONNS (50) connections in
#                flight, each a full TLS 1.3 handshake (checked with isSessionReused) with SNI
#                bench.test, one `GET /` with `Connection: close`, the whole answer read (a
#                complete 200 or a failure), then closed. connections/s and CPU µs per connection.
#   large        wrk -t1 -cCONNS keep-alive on /1m: 1 MiB answers, req/s and CPU µs per request
#   h2           h2load -t1 -cH2_CONNS -mH2_STREAMS (32 connections × 10 streams), TLS 1.3 + ALPN h2
#
# Tunables (environment): BENCH_DURATION (s, default 10), BENCH_ROUNDS (3),
# BENCH_CONNECTIONS (32), BENCH_HANDSHAKE_CLIENTS (4), BENCH_NEW_CONNECTIONS (50),
# BENCH_H2_CONNECTIONS (32), BENCH_H2_STREAMS (10), BENCH_TLS12 (1), BENCH_SCENARIOS
# ("keepalive reconnect full-tls13 full-tls12 new-conn large h2", plus "full-tls13-classical
# full-tls13-pq" after full-tls13 when a node has ML-KEM), BENCH_MAX_OTHER_PCT (15),
# BENCH_CLIENT_CPU (0), BENCH_PROXY_CPU (1), BENCH_MTLS (0), BENCH_KEY (ecdsa),
# BENCH_PROXIES, BENCH_NODES ("node"), BENCH_IDLE (0), BENCH_IDLE_CONNECTIONS (10000).
#
# BENCH_NODES="node /opt/node24/package/bin/node" runs Portcullis once per Node binary
# listed (all from the same dist/), each on its own port, named portcullis@VERSION in
# the tables (with the default, just `portcullis`). The new-conn client runs on the first.
#
# BENCH_KEY=rsa gives every proxy an RSA 2048 leaf (signed by the same ECDSA root) instead
# of ECDSA P-256: what full handshakes cost with the key most certificates still have.
#
# BENCH_MTLS=1 measures mutual TLS: every proxy requires a client certificate and checks
# it against a CRL (bench/lib/pki.sh makes a client CA, a client certificate, a revoked
# one and a CRL with ~1000 entries). Caddy 2.6 has no CRL check and is left out. wrk and
# h2load cannot present a client certificate, so only full-tls13, full-tls12 (s_time with
# -cert) and new-conn (the Node client with --cert) run. Before measuring, the script
# checks that each proxy answers 200 with the certificate and refuses a request without
# one and one with the revoked certificate, that s_time really sends it (each proxy's own
# record), and that the new-conn client gets only 200s with it and none without.
#
# BENCH_IDLE=1 runs bench/idle-connections.ts instead: BENCH_IDLE_CONNECTIONS idle TLS
# connections to Portcullis and to nginx (it raises `ulimit -n` itself), KiB per connection.
#
# Output: a markdown table on stdout (medians of the rounds, then every run); raw tool
# output, logs, configs and the table in bench/results/<timestamp>/. Every process
# started here is stopped on exit, by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-32}
HS_CLIENTS=${BENCH_HANDSHAKE_CLIENTS:-4}
NEW_CONNS=${BENCH_NEW_CONNECTIONS:-50}
H2_CONNS=${BENCH_H2_CONNECTIONS:-32}
H2_STREAMS=${BENCH_H2_STREAMS:-10}
TLS12=${BENCH_TLS12:-1}
MTLS=${BENCH_MTLS:-0}
KEY_TYPE=${BENCH_KEY:-ecdsa}
IDLE=${BENCH_IDLE:-0}
MTLS_SCENARIOS='full-tls13 full-tls12 new-conn'
if [[ $MTLS == 1 ]]; then
  SCENARIOS=${BENCH_SCENARIOS:-$MTLS_SCENARIOS}
else
  SCENARIOS=${BENCH_SCENARIOS:-keepalive reconnect full-tls13 full-tls12 new-conn large h2}
fi
CLIENT_CPU=${BENCH_CLIENT_CPU:-0}
PROXY_CPU=${BENCH_PROXY_CPU:-1}
MAX_OTHER_PCT=${BENCH_MAX_OTHER_PCT:-15}
WARMUP_S=3

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

[[ $MTLS == 0 || $MTLS == 1 ]] || die "BENCH_MTLS must be 0 or 1 (got '$MTLS')"
[[ $IDLE == 0 || $IDLE == 1 ]] || die "BENCH_IDLE must be 0 or 1 (got '$IDLE')"
case $KEY_TYPE in
  ecdsa) KEY_LABEL='ECDSA P-256' ;;
  rsa) KEY_LABEL='RSA 2048' ;;
  *) die "BENCH_KEY must be ecdsa or rsa (got '$KEY_TYPE')" ;;
esac
if [[ $MTLS == 1 ]]; then
  for scenario in $SCENARIOS; do
    [[ " $MTLS_SCENARIOS " == *" $scenario "* ]] ||
      die "BENCH_MTLS=1 runs only $MTLS_SCENARIOS: wrk, h2load and the post-quantum client present no client certificate, so '$scenario' would measure refusals"
  done
fi

# ---------------------------------------------------------------- idle connections
# A separate measurement with its own proxies and client (bench/idle-connections.ts).
if [[ $IDLE == 1 ]]; then
  cd "$ROOT"
  npm run build >&2
  RESULTS="$ROOT/bench/results/$(date -u +%Y%m%d-%H%M%S)-idle"
  mkdir -p "$RESULTS"
  log "idle connections: ${BENCH_IDLE_CONNECTIONS:-10000} per proxy; output in ${RESULTS#"$ROOT"/}"
  # it knows Portcullis and nginx (Caddy and HAProxy are not in it yet); it pins nothing,
  # and raises its own open-files limit for the connections
  # Portcullis on the first Node of BENCH_NODES (the tool's default: the node that runs it)
  idle_nodes=${BENCH_NODES:-node}
  node --import tsx bench/idle-connections.ts --connections "${BENCH_IDLE_CONNECTIONS:-10000}" --after-close 5 \
    --proxy both --node "$(command -v "${idle_nodes%% *}")" | tee "$RESULTS/summary.md"
  exit "${PIPESTATUS[0]}"
fi

# ---------------------------------------------------------------- prerequisites
NGINX=$(command -v nginx || true)
[[ -z $NGINX && -x /usr/sbin/nginx ]] && NGINX=/usr/sbin/nginx
missing=()
[[ -n $NGINX ]] || missing+=(nginx-light)
for tool in wrk openssl curl taskset node npm h2load; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  die "missing: ${missing[*]}. Install with: apt-get install -y nginx-light wrk openssl curl util-linux nghttp2-client (node 20 + npm for Portcullis; caddy haproxy for their rows)"
fi
if (($(nproc) < 2)); then
  die "needs 2 CPUs (one for the proxy, one for the load generator); nproc says $(nproc)"
fi

# ---------------------------------------------------------------- runtimes
# One Portcullis per Node binary of BENCH_NODES, named portcullis@VERSION when the
# variable is set (plain `portcullis` by default). The Node client of the
# full-tls13-pq/-classical scenarios runs on the first of them whose OpenSSL has ML-KEM
# (HS_NODE); the new-conn client on the first (CLIENT_NODE).
read -r -a NODES <<<"${BENCH_NODES:-node}"
((${#NODES[@]})) || die "BENCH_NODES is empty; list one or more node binaries, e.g. BENCH_NODES=\"node /opt/node24/package/bin/node\""
PCL_NAMES=()
HS_NODE=''
CLIENT_NODE=''
declare -A NODE_OF=()
for node_bin in "${NODES[@]}"; do
  path=$(command -v "$node_bin") || die "BENCH_NODES: '$node_bin' is not an executable; give node binaries by name or path"
  version=$("$path" -p process.versions.node 2>/dev/null) || die "BENCH_NODES: '$node_bin' is not a working node ('$node_bin -p process.versions.node' failed)"
  name=portcullis
  [[ -n ${BENCH_NODES:-} ]] && name="portcullis@$version"
  [[ -z ${NODE_OF[$name]:-} ]] || die "BENCH_NODES lists Node $version twice ('${NODE_OF[$name]}' and '$path'); list each runtime once"
  NODE_OF[$name]=$path
  PCL_NAMES+=("$name")
  [[ -n $CLIENT_NODE ]] || CLIENT_NODE=$path
  if [[ -z $HS_NODE ]] && "$path" -e "require('node:tls').createSecureContext({ ecdhCurve: 'X25519MLKEM768' })" 2>/dev/null; then
    HS_NODE=$path
  fi
done
HS_PQ_SCENARIOS='full-tls13-classical full-tls13-pq'
if [[ -z ${BENCH_SCENARIOS:-} && $MTLS == 0 && -n $HS_NODE ]]; then
  SCENARIOS=${SCENARIOS/full-tls13 /full-tls13 $HS_PQ_SCENARIOS }
fi
for scenario in $SCENARIOS; do
  case $scenario in
    keepalive | reconnect | full-tls13 | full-tls12 | new-conn | large | h2) ;;
    full-tls13-pq | full-tls13-classical)
      [[ -n $HS_NODE ]] || die "$scenario needs a Node whose OpenSSL has ML-KEM (3.5 or later: Node 24, or 22.20 and later) among BENCH_NODES to run its client, and BENCH_NODES='${NODES[*]}' has none; add one, e.g. BENCH_NODES=\"node /opt/node24/package/bin/node\""
      ;;
    *) die "BENCH_SCENARIOS: unknown scenario '$scenario'; choose from keepalive reconnect full-tls13 full-tls12 $HS_PQ_SCENARIOS new-conn large h2" ;;
  esac
done

LIB="$ROOT/bench/lib"
# shellcheck source=lib/pki.sh
source "$LIB/pki.sh"
# shellcheck source=lib/proxies.sh
source "$LIB/proxies.sh"
# shellcheck source=lib/measure.sh
source "$LIB/measure.sh"
# shellcheck source=lib/checks.sh
source "$LIB/checks.sh"
# shellcheck source=lib/report.sh
source "$LIB/report.sh"

# INSTANCES: the order of the first round; later rounds alternate it
# shellcheck disable=SC2086 # a list of names
select_proxies ${BENCH_PROXIES:-portcullis nginx caddy haproxy node-bare}

cd "$ROOT"
if [[ ! -f dist/cli/main.js ]] || [[ -n $(find src -newer dist/cli/main.js -type f -print -quit) ]]; then
  log "dist/ is missing or older than src/: npm run build"
  npm run build >&2
fi

STAMP=$(date -u +%Y%m%d-%H%M%S)
RESULTS="$ROOT/bench/results/$STAMP"
mkdir -p "$RESULTS"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-bench.XXXXXX")

# ---------------------------------------------------------------- cleanup
# Servers (PIDS) and in-flight load generators (LOAD_PIDS) started by this script.
# Signals go only to PIDs that are still our own children, never by name.
PIDS=()
LOAD_PIDS=()
is_ours() { [[ $(ps -o ppid= -p "$1" 2>/dev/null | tr -d ' ') == "$$" ]]; }
cleanup() {
  local status=$? pid
  trap - EXIT INT TERM
  set +e
  for pid in "${LOAD_PIDS[@]}" "${PIDS[@]}"; do is_ours "$pid" && kill -TERM "$pid" 2>/dev/null; done
  for pid in "${LOAD_PIDS[@]}" "${PIDS[@]}"; do
    for _ in $(seq 50); do is_ours "$pid" || break; sleep 0.1; done
    is_ours "$pid" && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
  done
  # keep the logs and configs next to the figures, then drop keys and temp files
  cp -f "$WORK"/backend/logs/error.log "$RESULTS/backend-error.log" 2>/dev/null || true
  cp -f "$WORK"/backend/nginx.conf "$RESULTS/nginx-backend.conf" 2>/dev/null || true
  keep_proxy_files
  rm -rf "$WORK"
  ((status == 0)) || log "failed (exit $status); partial output in $RESULTS"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- certificates
PKI="$WORK/pki"
make_server_pki
# Client arguments that present the client certificate (empty without mTLS).
CURL_CERT=()
OPENSSL_CERT=()
NODE_CERT=()
MODE_NOTE=''
[[ $KEY_TYPE == rsa ]] && MODE_NOTE=" (RSA 2048 server certificate)"
if [[ $MTLS == 1 ]]; then
  make_client_pki
  CURL_CERT=(--cert "$PKI/client.pem" --key "$PKI/client.key")
  OPENSSL_CERT=(-cert "$PKI/client.pem" -key "$PKI/client.key")
  NODE_CERT=(--cert "$PKI/client.pem" --key "$PKI/client.key")
  MODE_NOTE+=" (mutual TLS: client certificate required, CRL with $CRL_ENTRIES entries)"
fi

# ---------------------------------------------------------------- start
mapfile -t PORT_LIST < <(node bench/free-ports.js $((1 + ${#INSTANCES[@]})))
BACKEND_PORT=${PORT_LIST[0]}
for i in "${!INSTANCES[@]}"; do PROXY_PORT[${INSTANCES[i]}]=${PORT_LIST[i + 1]}; done
log "ports: backend $BACKEND_PORT$(for name in "${INSTANCES[@]}"; do printf ', %s %s' "$name" "${PROXY_PORT[$name]}"; done)"

nginx_backend_config "$BACKEND_PORT"
taskset -c "$CLIENT_CPU" "$NGINX" -p "$WORK/backend" -c "$WORK/backend/nginx.conf" -g 'daemon off;' \
  >"$RESULTS/backend.out" 2>&1 &
BACKEND_PID=$!
PIDS+=("$BACKEND_PID")
for name in "${INSTANCES[@]}"; do start_proxy "$name"; done

wait_ready backend "$BACKEND_PID" "http://127.0.0.1:$BACKEND_PORT/"
for name in "${INSTANCES[@]}"; do wait_ready "$name" "${PROXY_PID[$name]}" "https://127.0.0.1:${PROXY_PORT[$name]}/"; done
log "backend and ${INSTANCES[*]} are up"

# ---------------------------------------------------------------- environment
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src 2>/dev/null || echo ' (src/ has uncommitted changes)')"
  echo "cpus: $(nproc) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'))"
  echo "kernel: $(uname -r)"
  for name in "${INSTANCES[@]}"; do echo "$name: $(proxy_version "$name")"; done
  echo "backend: nginx $(nginx_version)"
  echo "openssl (CLI, wrk, h2load, nginx, HAProxy): $(openssl version)"
  echo "server certificate: $KEY_LABEL leaf, ECDSA P-256 root"
  if [[ " $SCENARIOS " == *" full-tls13-pq "* || " $SCENARIOS " == *" full-tls13-classical "* ]]; then
    echo "client of full-tls13-pq/-classical: bench/full-handshakes.ts on Node $("$HS_NODE" -v) at $HS_NODE, OpenSSL $("$HS_NODE" -p process.versions.openssl)"
  fi
  [[ " $SCENARIOS " == *" new-conn "* ]] && echo "client of new-conn: bench/full-handshakes.ts on Node $("$CLIENT_NODE" -v) at $CLIENT_NODE, $NEW_CONNS connections in flight"
  echo "wrk: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); h2load: $(h2load --version | head -1)"
  echo "pinning: proxy under test on CPU $PROXY_CPU; load generator + backend on CPU $CLIENT_CPU"
  if [[ $MTLS == 1 ]]; then
    echo "mutual TLS: client certificate ECDSA P-256 (CN=bench-client, clientAuth) issued by a separate client CA; CRL of that CA with $CRL_ENTRIES revoked serials; s_time and the new-conn client present the client certificate"
  fi
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "sysctl: $(sysctl -n net.ipv4.tcp_tw_reuse 2>/dev/null | sed 's/^/tcp_tw_reuse=/'), somaxconn=$(sysctl -n net.core.somaxconn 2>/dev/null)"
  for name in "${INSTANCES[@]}"; do
    for v in tls1_3 tls1_2; do
      echo "negotiated ($name, -$v): $(openssl s_client -connect "127.0.0.1:${PROXY_PORT[$name]}" -servername bench.test -"$v" "${OPENSSL_CERT[@]}" </dev/null 2>/dev/null |
        grep -E '^(New,|Peer signature type|Server Temp Key|Negotiated TLS1.3 group)' | tr '\n' ';' | sed 's/;$//')"
    done
  done
} >"$RESULTS/environment.txt"
sed 's/^/[bench]   /' "$RESULTS/environment.txt" >&2

# ---------------------------------------------------------------- checks and warm-up
RUNS="$RESULTS/runs.tsv"
printf '%s\t' scenario proxy round rate p50_ms p99_ms proxy_cpu_pct cpu_us_per_op proxy_core_idle_pct \
  loadgen_backend_cpu_pct other_cpu_pct non2xx socket_errors proxy_log_lines attempts >"$RUNS"
printf 'note\n' >>"$RUNS"

has_scenario() { [[ " $SCENARIOS " == *" $1 "* ]]; }
[[ $MTLS == 1 ]] && mtls_check
has_scenario new-conn && new_conn_check
if [[ $MTLS == 1 ]]; then
  # wrk cannot present a client certificate: warm up with handshakes instead
  log "warm-up: ${WARMUP_S}s of full TLS 1.3 handshakes with the client certificate on each proxy (not recorded)"
  for name in "${INSTANCES[@]}"; do
    taskset -c "$CLIENT_CPU" openssl s_time -connect "127.0.0.1:${PROXY_PORT[$name]}" -new -tls1_3 "${OPENSSL_CERT[@]}" \
      -time "$WARMUP_S" >"$RESULTS/warmup-$name.txt" 2>&1 || true
  done
else
  [[ -n ${PRODUCT_OF[nginx]:-} ]] && has_scenario reconnect && wrk_resumption_check
  for scenario in $HS_PQ_SCENARIOS; do has_scenario "$scenario" && group_check "$scenario"; done
  has_scenario h2 && h2_check
  has_scenario large && large_check
  log "warm-up: ${WARMUP_S}s keep-alive load on each proxy (not recorded)"
  for name in "${INSTANCES[@]}"; do
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${WARMUP_S}s" "https://127.0.0.1:${PROXY_PORT[$name]}/" \
      >"$RESULTS/warmup-$name.txt" 2>&1 || true
  done
fi

# ---------------------------------------------------------------- measuring
for round in $(seq "$ROUNDS"); do
  # alternate which proxy goes first, so drift (thermal, noisy neighbours) hits all alike
  order=()
  for i in "${!INSTANCES[@]}"; do
    if ((round % 2)); then order+=("${INSTANCES[i]}"); else order=("${INSTANCES[i]}" "${order[@]}"); fi
  done
  for scenario in $SCENARIOS; do
    [[ $scenario == full-tls12 ]] && ((round > 1 || !TLS12)) && continue
    for name in "${order[@]}"; do measure "$scenario" "$name" "$round"; done
  done
done

# ---------------------------------------------------------------- report
# Peak resident memory (VmHWM) of each proxy, master + worker for nginx.
peak_rss_mb() { # PID
  local pid total=0 kb
  for pid in "$1" $(pgrep -P "$1" || true); do
    kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
    total=$((total + ${kb:-0}))
  done
  awk -v kb="$total" 'BEGIN { printf "%.0f MB", kb / 1024 }'
}
{
  echo "peak RSS: $(for name in "${INSTANCES[@]}"; do printf '%s %s, ' "$name" "$(peak_rss_mb "${PROXY_PID[$name]}")"; done | sed 's/, $//') (nginx: master + worker)"
  for name in "${PCL_NAMES[@]}"; do
    [[ -n ${PROXY_PID[$name]:-} ]] || continue
    echo "$name log, lines by level/event/reason/detail: $(awk '
      { key = ""
        n = split("level event reason detail", names, " ")
        for (i = 1; i <= n; i++) if (match($0, "\"" names[i] "\":\"[^\"]*\"")) key = key (key == "" ? "" : "/") substr($0, RSTART + length(names[i]) + 4, RLENGTH - length(names[i]) - 5)
        count[key]++ }
      END { for (k in count) printf "%s%d x %s", (sep++ ? "; " : ""), count[k], k }' "${PROXY_LOG[$name]}")"
  done
  for name in "${INSTANCES[@]}"; do
    [[ ${PRODUCT_OF[$name]} == portcullis ]] || echo "$name own log: $(log_lines "${PROXY_LOG[$name]}") lines"
  done
  echo "backend error log: $(log_lines "$WORK/backend/logs/error.log") lines"
} >>"$RESULTS/environment.txt"

report | tee "$RESULTS/summary.md"
log "raw output in ${RESULTS#"$ROOT"/}"
