#!/usr/bin/env bash
# One Portcullis instance against three behind HAProxy, and what the redis state
# backend adds, on this machine, in one run.
#
#   bash bench/cluster.sh             # from the repo root, after `npm run build`
#
# Topologies (each started, measured and stopped in turn, ROUNDS times, order reversed
# every round; medians reported):
#   one-memory      one instance, state.backend: memory, clients connect to it directly
#   one-redis       one instance, state.backend: redis (a local redis-server), directly
#   one-haproxy     one instance (redis) behind HAProxy in TCP mode with PROXY protocol v2
#   three-haproxy   three instances (redis, one cluster) behind HAProxy, round robin
# Every instance runs on BENCH_NODE (default: the pinned Node 24 of scripts/node24.sh, which
# installs it into .cache/ when missing), workers: 1, and the same config: TLS 1.3 + 1.2, an ECDSA P-256 certificate, a
# route `/` and a route `/limited` with a rate limit far above the load (rps and burst
# 1000000: every request takes a token, none is refused), both to the same nginx backend.
# HAProxy (one thread) passes TLS through: Portcullis terminates it.
#
# Scenarios per topology: keepalive (wrk -t2 -cCONNS, HTTP/1.1 keep-alive on /),
# limited (the same on /limited: the rate-limit path, leased from Redis in cluster mode),
# reconnect (`Connection: close` on /: a TCP + TLS 1.3 resumption per request; with three
# instances a resumption may land on another instance: shared ticket keys).
# Output: a markdown table (req/s, latency p50 and p99) on stdout; raw output in
# bench/results/cluster-<timestamp>/. This machine has 2 cores: three instances cannot
# scale past them; the row shows what the cluster costs, not what more machines gain.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DURATION=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-32}
TOPOLOGIES=${BENCH_TOPOLOGIES:-"one-memory one-redis one-haproxy three-haproxy"}
SCENARIOS=${BENCH_SCENARIOS:-"keepalive limited reconnect"}
NODE_BIN=${BENCH_NODE:-$(bash scripts/node24.sh)}
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
OUT=bench/results/cluster-$(date -u +%Y%m%dT%H%M%SZ)
WORK=$(mktemp -d /tmp/pcl-cluster-bench.XXXXXX)
PIDS=()

log() { printf '[cluster-bench] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
cleanup() {
  for pid in "${STARTED[@]}" "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${STARTED[@]}" "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
STARTED=()
trap cleanup EXIT

for tool in wrk redis-server nginx openssl curl "$HAPROXY"; do command -v "$tool" >/dev/null || die "missing: $tool (apt-get install -y wrk redis-server nginx-light openssl curl haproxy)"; done
[[ -f dist/cli/main.js ]] || die "run npm run build first (instances run from dist/)"
mkdir -p "$OUT"

# certificates: an ECDSA root and a leaf for bench.test + 127.0.0.1
openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/ca.key" 2>/dev/null
openssl req -x509 -new -key "$WORK/ca.key" -sha256 -days 2 -subj '/CN=cluster bench CA' \
  -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' -out "$WORK/ca.pem" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/leaf.key" 2>/dev/null
openssl req -new -key "$WORK/leaf.key" -subj '/CN=bench.test' -out "$WORK/leaf.csr" 2>/dev/null
printf '%s\n' 'subjectAltName=DNS:bench.test,IP:127.0.0.1' 'extendedKeyUsage=serverAuth' 'keyUsage=critical,digitalSignature' >"$WORK/leaf.ext"
openssl x509 -req -in "$WORK/leaf.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial -days 2 -sha256 -extfile "$WORK/leaf.ext" -out "$WORK/leaf.pem" 2>/dev/null

mapfile -t P < <(node bench/free-ports.js 7)
BACKEND_PORT=${P[0]} REDIS_PORT=${P[1]} LB_PORT=${P[2]} INSTANCE_PORTS=("${P[3]}" "${P[4]}" "${P[5]}")

# the backend: nginx answering "ok"
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/nginx;
  proxy_temp_path $WORK/nginx;
  fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx;
  scgi_temp_path $WORK/nginx;
  server { listen 127.0.0.1:$BACKEND_PORT; location / { return 200 "ok\n"; } }
}
CONF
nginx -c "$WORK/nginx/nginx.conf" &
PIDS+=($!)

redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --dir "$WORK" >"$OUT/redis.log" 2>&1 &
PIDS+=($!)

wait_url() { # URL [CURL ARGS]
  local url=$1; shift
  for _ in $(seq 1 200); do curl -sf -o /dev/null "$@" "$url" && return 0; sleep 0.1; done
  die "no answer from $url"
}
wait_url "http://127.0.0.1:$BACKEND_PORT/"

instance_config() { # INDEX BACKEND(memory|redis) PROXY_PROTOCOL(0|1)
  local i=$1 dir=$WORK/instance-$1 state='' pp=''
  mkdir -p "$dir"
  [[ $2 == redis ]] && state="state: { backend: redis, redis: \"redis://127.0.0.1:$REDIS_PORT/0\", cluster: bench }"
  [[ $3 == 1 ]] && pp=", proxyProtocol: [127.0.0.1]"
  cat >"$dir/portcullis.yaml" <<CONF
listen: { https: "127.0.0.1:${INSTANCE_PORTS[$i]}"$pp }
dataDir: $dir/data
log: { access: $dir/access.log }
$state
sites:
  - hosts: [bench.test, 127.0.0.1]
    default: true
    certificates: [{ cert: $WORK/leaf.pem, key: $WORK/leaf.key }]
    routes:
      - { path: /, upstream: "http://127.0.0.1:$BACKEND_PORT" }
      - { path: /limited, upstream: "http://127.0.0.1:$BACKEND_PORT", rateLimit: { rps: 1000000, burst: 1000000 } }
CONF
}

haproxy_config() { # INSTANCES
  local servers='' i
  for ((i = 0; i < $1; i++)); do servers+="  server p$i 127.0.0.1:${INSTANCE_PORTS[$i]} send-proxy-v2"$'\n'; done
  cat >"$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 8192
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend tls
  bind 127.0.0.1:$LB_PORT
  default_backend portcullis
backend portcullis
  balance roundrobin
$servers
CONF
  "$HAPROXY" -c -q -f "$WORK/haproxy.cfg" || die "haproxy -c failed"
}

start_topology() { # NAME → sets TARGET_PORT
  local n=1 backend=redis pp=0 i
  case $1 in
    one-memory) backend=memory ;;
    one-redis) ;;
    one-haproxy) pp=1 ;;
    three-haproxy) n=3 pp=1 ;;
    *) die "unknown topology $1" ;;
  esac
  STARTED=()
  for ((i = 0; i < n; i++)); do
    instance_config "$i" "$backend" "$pp"
    "$NODE_BIN" bin/portcullis.js start --config "$WORK/instance-$i/portcullis.yaml" >"$OUT/$1-instance-$i.log" 2>&1 &
    STARTED+=($!)
  done
  for ((i = 0; i < n; i++)); do
    for _ in $(seq 1 300); do grep -q '"event":"listening"' "$OUT/$1-instance-$i.log" && break; sleep 0.1; done
    grep -q '"event":"listening"' "$OUT/$1-instance-$i.log" || die "instance $i of $1 did not start: $(tail -5 "$OUT/$1-instance-$i.log")"
  done
  TARGET_PORT=${INSTANCE_PORTS[0]}
  if ((pp)); then
    haproxy_config "$n"
    "$HAPROXY" -db -f "$WORK/haproxy.cfg" >"$OUT/$1-haproxy.log" 2>&1 &
    STARTED+=($!)
    TARGET_PORT=$LB_PORT
  fi
  wait_url "https://bench.test:$TARGET_PORT/" --cacert "$WORK/ca.pem" --resolve "bench.test:$TARGET_PORT:127.0.0.1"
}

stop_topology() {
  local pid
  for pid in "${STARTED[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${STARTED[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"/instance-*/data
}

# wrk prints latencies as 812.00us / 1.23ms / 1.02s
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /[0-9]s$/ && v !~ /ms$/) n *= 1000; printf "%.2f", n }'; }

measure() { # TOPOLOGY SCENARIO ROUND
  local path=/ extra=() file="$OUT/$1-$2-$3.wrk"
  [[ $2 == limited ]] && path=/limited
  [[ $2 == reconnect ]] && extra=(-H 'Connection: close')
  wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency "${extra[@]}" "https://127.0.0.1:$TARGET_PORT$path" >"$file" 2>&1 || die "wrk failed: $(cat "$file")"
  local rps p50 p99 errors
  rps=$(awk '/^Requests\/sec/ { printf "%.0f", $2 }' "$file")
  p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$file")")
  p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$file")")
  errors=$(awk '/Non-2xx/ { print $NF } /Socket errors/ { print "socket" }' "$file" | paste -sd, -)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$rps" "$p50" "$p99" "${errors:-}" | tee -a "$OUT/runs.tsv" >&2
}

log "node: $("$NODE_BIN" -v) ($NODE_BIN); redis $(redis-server --version | awk '{print $3}'); $("$HAPROXY" -v | head -1 | cut -d' ' -f1-3); results in $OUT"
read -r -a order <<<"$TOPOLOGIES"
for ((round = 1; round <= ROUNDS; round++)); do
  for topology in "${order[@]}"; do
    start_topology "$topology"
    # JIT and pools warm before the first measured run, as for every later one
    wrk -t2 -c"$CONNS" -d2s "https://127.0.0.1:$TARGET_PORT/" >/dev/null 2>&1 || true
    for scenario in $SCENARIOS; do measure "$topology" "$scenario" "$round"; done
    stop_topology
  done
  mapfile -t order < <(printf '%s\n' "${order[@]}" | tac)
done

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
{
  echo "| topology | scenario | req/s | p50 ms | p99 ms |"
  echo "|---|---|---:|---:|---:|"
  for topology in $TOPOLOGIES; do
    for scenario in $SCENARIOS; do
      rows=$(awk -F'\t' -v t="$topology" -v s="$scenario" '$1 == t && $2 == s' "$OUT/runs.tsv")
      printf '| %s | %s | %s | %s | %s |\n' "$topology" "$scenario" \
        "$(cut -f4 <<<"$rows" | median)" "$(cut -f5 <<<"$rows" | median)" "$(cut -f6 <<<"$rows" | median)"
    done
  done
  errors=$(awk -F'\t' '$7 != "" { print $1 " " $2 " round " $3 ": " $7 }' "$OUT/runs.tsv")
  if [[ -n $errors ]]; then printf '\nRuns with errors (non-2xx count, or socket errors):\n%s\n' "$errors"; fi
} | tee "$OUT/table.md"
