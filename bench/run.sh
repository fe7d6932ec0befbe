#!/usr/bin/env bash
# Portcullis vs nginx as TLS-terminating reverse proxies, on this machine, in one run.
#
#   bash bench/run.sh                 # from the repo root; about 2½ minutes
#
# Both proxies terminate TLS with the same ECDSA P-256 certificate and forward
# to the same backend (a separate nginx instance answering `return 200 "ok\n"`
# over plain HTTP/1.1 keep-alive). Each proxy runs one worker pinned to one CPU
# (PROXY_CPU); the load generator and the backend share the other one
# (CLIENT_CPU). CPU use is sampled from /proc around every run: the proxy's own
# time, its core's idle time (a proxy-bound run leaves none), the load
# generator's and backend's time, and everyone else's. A run that other
# processes disturbed is repeated (twice at most) and flagged if it still is.
#
# Scenarios (the proxies alternate, ROUNDS times):
#   keepalive    wrk -t1 -cCONNS, HTTP/1.1 keep-alive over TLS 1.3: proxied req/s
#   reconnect    the same with `Connection: close`: a new TCP + TLS connection per
#                request. wrk keeps its SSL object across reconnects, so these
#                handshakes are TLS 1.3 *resumptions* (PSK + ECDHE, no certificate
#                signature); the script checks this against nginx's $ssl_session_reused.
#   full-tls13   full TLS 1.3 handshakes (no resumption, no HTTP request), driven by
#                HS_CLIENTS parallel `openssl s_time -new`
#   full-tls12   the same for TLS 1.2 (first round only; BENCH_TLS12=0 skips it)
#   full-tls13-pq         full TLS 1.3 handshakes from a client offering the post-quantum
#                hybrid X25519MLKEM768 with a key share (and X25519 with one): bench/full-handshakes.ts,
#                HS_CLIENTS handshakes in flight, run by the first of BENCH_NODES whose OpenSSL
#                has ML-KEM (s_time's OpenSSL 3.0 cannot offer it). A server without ML-KEM
#                (nginx and Node 20 here) takes the X25519 share: classical, no extra round trip.
#   full-tls13-classical  the same client offering classical groups only (X25519 key share;
#                P-256, P-384 listed): what full-tls13-pq costs without the hybrid, same client.
#                The two run by default when one of BENCH_NODES has ML-KEM; before measuring,
#                the script records per proxy the key shares offered, whether the server asked
#                for another (HelloRetryRequest) and the group of each handshake.
#
# Tunables (environment): BENCH_DURATION (s, default 10), BENCH_ROUNDS (2),
# BENCH_CONNECTIONS (32), BENCH_HANDSHAKE_CLIENTS (4), BENCH_TLS12 (1),
# BENCH_SCENARIOS ("keepalive reconnect full-tls13 full-tls12", plus "full-tls13-classical
# full-tls13-pq" after full-tls13 when a node has ML-KEM), BENCH_MAX_OTHER_PCT (15),
# BENCH_CLIENT_CPU (0), BENCH_PROXY_CPU (1), BENCH_MTLS (0), BENCH_NODES ("node").
#
# BENCH_NODES="node /opt/node24/package/bin/node" runs Portcullis once per Node binary
# listed (all from the same dist/), each on its own port, named portcullis@VERSION in
# the tables (with the default, just `portcullis`). All of them and nginx run for the
# whole benchmark, pinned to PROXY_CPU; each scenario loads one at a time, in an order
# that reverses every round.
#
# BENCH_MTLS=1 measures mutual TLS: both proxies require a client certificate and
# check it against a CRL. The script makes a separate ECDSA P-256 client CA (an
# openssl CA database in $WORK/pki/client-ca), a client certificate (clientAuth)
# and, with `openssl ca -gencrl`, that CA's CRL listing ~1000 revoked serials plus
# one revoked certificate (so the lookup is realistic). Portcullis gets
# `clientAuth: { mode: require, ca, crl }`, nginx `ssl_verify_client on` +
# `ssl_client_certificate` + `ssl_crl`. wrk cannot present a client certificate,
# so only the handshake scenarios run (default BENCH_SCENARIOS "full-tls13
# full-tls12"), `openssl s_time` presenting the client certificate. Before
# measuring, the script checks that each proxy answers 200 with the certificate
# and refuses a request without one and one with the revoked certificate, and
# that s_time really sends it; it stops otherwise.
#
# Output: a markdown table on stdout; raw tool output, logs, configs and the
# table in bench/results/<timestamp>/. Every process started here is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-2}
CONNS=${BENCH_CONNECTIONS:-32}
HS_CLIENTS=${BENCH_HANDSHAKE_CLIENTS:-4}
TLS12=${BENCH_TLS12:-1}
MTLS=${BENCH_MTLS:-0}
if [[ $MTLS == 1 ]]; then
  SCENARIOS=${BENCH_SCENARIOS:-full-tls13 full-tls12}
else
  SCENARIOS=${BENCH_SCENARIOS:-keepalive reconnect full-tls13 full-tls12}
fi
CLIENT_CPU=${BENCH_CLIENT_CPU:-0}
PROXY_CPU=${BENCH_PROXY_CPU:-1}
MAX_OTHER_PCT=${BENCH_MAX_OTHER_PCT:-15}
WARMUP_S=3

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

[[ $MTLS == 0 || $MTLS == 1 ]] || die "BENCH_MTLS must be 0 or 1 (got '$MTLS')"
if [[ $MTLS == 1 ]]; then
  for scenario in $SCENARIOS; do
    [[ $scenario == full-tls13 || $scenario == full-tls12 ]] ||
      die "BENCH_MTLS=1 runs only the handshake scenarios full-tls13 full-tls12: wrk and bench/full-handshakes.ts cannot present a client certificate, so '$scenario' would measure refusals"
  done
fi

# ---------------------------------------------------------------- prerequisites
NGINX=$(command -v nginx || true)
[[ -z $NGINX && -x /usr/sbin/nginx ]] && NGINX=/usr/sbin/nginx
missing=()
[[ -n $NGINX ]] || missing+=(nginx-light)
for tool in wrk openssl curl taskset node npm; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  die "missing: ${missing[*]}. Install with: apt-get install -y nginx-light wrk openssl curl util-linux (node 20 + npm for Portcullis)"
fi
if (($(nproc) < 2)); then
  die "needs 2 CPUs (one for the proxy, one for the load generator); nproc says $(nproc)"
fi

# ---------------------------------------------------------------- runtimes
# One Portcullis per Node binary of BENCH_NODES, named portcullis@VERSION when the
# variable is set (plain `portcullis` by default, as before it existed). The Node
# client of the full-tls13-pq/-classical scenarios runs on the first of them whose
# OpenSSL has ML-KEM (HS_NODE).
read -r -a NODES <<<"${BENCH_NODES:-node}"
((${#NODES[@]})) || die "BENCH_NODES is empty; list one or more node binaries, e.g. BENCH_NODES=\"node /opt/node24/package/bin/node\""
PCL_NAMES=()
HS_NODE=''
declare -A NODE_OF=() PROXY_PID=() PROXY_PORT=() PROXY_LOG=()
for node_bin in "${NODES[@]}"; do
  path=$(command -v "$node_bin") || die "BENCH_NODES: '$node_bin' is not an executable; give node binaries by name or path"
  version=$("$path" -p process.versions.node 2>/dev/null) || die "BENCH_NODES: '$node_bin' is not a working node ('$node_bin -p process.versions.node' failed)"
  name=portcullis
  [[ -n ${BENCH_NODES:-} ]] && name="portcullis@$version"
  [[ -z ${NODE_OF[$name]:-} ]] || die "BENCH_NODES lists Node $version twice ('${NODE_OF[$name]}' and '$path'); list each runtime once"
  NODE_OF[$name]=$path
  PCL_NAMES+=("$name")
  if [[ -z $HS_NODE ]] && "$path" -e "require('node:tls').createSecureContext({ ecdhCurve: 'X25519MLKEM768' })" 2>/dev/null; then
    HS_NODE=$path
  fi
done
# the order of the first round; later rounds alternate it
PROXIES=("${PCL_NAMES[@]}" nginx)
HS_PQ_SCENARIOS='full-tls13-classical full-tls13-pq'
if [[ -z ${BENCH_SCENARIOS:-} && $MTLS == 0 && -n $HS_NODE ]]; then
  SCENARIOS=${SCENARIOS/full-tls13 /full-tls13 $HS_PQ_SCENARIOS }
fi
for scenario in $SCENARIOS; do
  case $scenario in
    keepalive | reconnect | full-tls13 | full-tls12) ;;
    full-tls13-pq | full-tls13-classical)
      [[ -n $HS_NODE ]] || die "$scenario needs a Node whose OpenSSL has ML-KEM (3.5 or later: Node 24, or 22.20 and later) among BENCH_NODES to run its client, and BENCH_NODES='${NODES[*]}' has none; add one, e.g. BENCH_NODES=\"node /opt/node24/package/bin/node\""
      ;;
    *) die "BENCH_SCENARIOS: unknown scenario '$scenario'; choose from keepalive reconnect full-tls13 full-tls12 $HS_PQ_SCENARIOS" ;;
  esac
done

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
  cp -f "$WORK"/nginx/logs/error.log "$RESULTS/nginx-error.log" 2>/dev/null || true
  for name in "${PCL_NAMES[@]}"; do
    cp -f "$WORK/$name.log" "$RESULTS/$name.log" 2>/dev/null || true
    cp -f "$WORK/$name.yaml" "$RESULTS/$name.yaml" 2>/dev/null || true
  done
  cp -f "$WORK"/nginx/nginx.conf "$RESULTS/nginx-proxy.conf" 2>/dev/null || true
  cp -f "$WORK"/backend/nginx.conf "$RESULTS/nginx-backend.conf" 2>/dev/null || true
  rm -rf "$WORK"
  ((status == 0)) || log "failed (exit $status); partial output in $RESULTS"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- certificates
# A self-signed ECDSA P-256 root: NAME.key and NAME.pem in $PKI.
make_root() { # NAME COMMON-NAME
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$1.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/$1.key" -sha256 -days 2 -subj "/CN=$2" \
    -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' \
    -out "$PKI/$1.pem" 2>/dev/null
}

# A root and a leaf for bench.test + 127.0.0.1 (serverAuth).
log "making an ECDSA P-256 CA and leaf in $WORK/pki"
PKI="$WORK/pki"
mkdir -p "$PKI"
make_root ca 'Portcullis bench CA'
openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/leaf.key" 2>/dev/null
openssl req -new -key "$PKI/leaf.key" -subj '/CN=bench.test' -out "$PKI/leaf.csr" 2>/dev/null
printf '%s\n' 'subjectAltName=DNS:bench.test,IP:127.0.0.1' 'extendedKeyUsage=serverAuth' \
  'keyUsage=critical,digitalSignature' 'basicConstraints=critical,CA:FALSE' >"$PKI/leaf.ext"
openssl x509 -req -in "$PKI/leaf.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -CAcreateserial \
  -days 2 -sha256 -extfile "$PKI/leaf.ext" -out "$PKI/leaf.pem" 2>/dev/null

# Mutual TLS (BENCH_MTLS=1): a separate client CA run as an openssl CA database,
# a client certificate, and the CA's CRL. The CRL lists ~1000 revoked serials
# (written straight into index.txt, as `openssl ca -revoke` would) plus one real
# certificate revoked with `openssl ca -revoke`, which the checks below present.
# Client arguments that present the client certificate (empty without mTLS).
CURL_CERT=()
OPENSSL_CERT=()
MODE_NOTE=''
NGINX_MTLS_HTTP='' NGINX_MTLS_SERVER='' NGINX_MTLS_LOCATION='' PCL_MTLS=''
if [[ $MTLS == 1 ]]; then
  log "making an ECDSA P-256 client CA, a client certificate and a CRL in $PKI/client-ca"
  CADIR="$PKI/client-ca"
  mkdir -p "$CADIR/certs"
  make_root client-ca 'Portcullis bench client CA'
  cat >"$CADIR/ca.cnf" <<EOF
[ ca ]
default_ca = client_ca
[ client_ca ]
database = $CADIR/index.txt
serial = $CADIR/serial
crlnumber = $CADIR/crlnumber
new_certs_dir = $CADIR/certs
certificate = $PKI/client-ca.pem
private_key = $PKI/client-ca.key
default_md = sha256
default_days = 2
default_crl_days = 2
unique_subject = no
policy = policy_any
x509_extensions = client_cert
crl_extensions = crl_ext
[ policy_any ]
commonName = supplied
[ client_cert ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ crl_ext ]
authorityKeyIdentifier = keyid:always
EOF
  echo 1000 >"$CADIR/serial"
  echo 1000 >"$CADIR/crlnumber"
  # 1000 revoked entries with random 128-bit serials: status, expiry, revocation date[,reason], serial, file, subject
  openssl rand -hex 16000 | fold -w32 | tr a-f A-F |
    awk -v e="$(date -u -d '+2 days' +%y%m%d%H%M%SZ)" -v r="$(date -u -d '-1 hour' +%y%m%d%H%M%SZ)" \
      '{ printf "R\t%s\t%s,keyCompromise\t%s\tunknown\t/CN=revoked-%d\n", e, r, $1, NR }' >"$CADIR/index.txt"
  for name in client revoked; do
    openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
    openssl req -new -key "$PKI/$name.key" -subj "/CN=bench-$name" -out "$PKI/$name.csr" 2>/dev/null
    openssl ca -batch -notext -config "$CADIR/ca.cnf" -in "$PKI/$name.csr" -out "$PKI/$name.pem" >"$CADIR/ca-$name.log" 2>&1 ||
      die "openssl ca could not issue the $name certificate: $(cat "$CADIR/ca-$name.log")"
  done
  openssl ca -config "$CADIR/ca.cnf" -revoke "$PKI/revoked.pem" -crl_reason superseded >"$CADIR/ca-revoke.log" 2>&1 ||
    die "openssl ca -revoke failed: $(cat "$CADIR/ca-revoke.log")"
  openssl ca -config "$CADIR/ca.cnf" -gencrl -out "$PKI/client-ca.crl" >"$CADIR/ca-gencrl.log" 2>&1 ||
    die "openssl ca -gencrl failed: $(cat "$CADIR/ca-gencrl.log")"
  CRL_ENTRIES=$(openssl crl -in "$PKI/client-ca.crl" -noout -text | grep -c 'Serial Number:' || true)
  openssl verify -CAfile "$PKI/client-ca.pem" -crl_check -CRLfile "$PKI/client-ca.crl" -purpose sslclient "$PKI/client.pem" >/dev/null 2>&1 ||
    die "the client certificate does not verify against the client CA and its CRL"
  if openssl verify -CAfile "$PKI/client-ca.pem" -crl_check -CRLfile "$PKI/client-ca.crl" "$PKI/revoked.pem" >/dev/null 2>&1; then
    die "the revoked certificate still verifies against the CRL"
  fi
  log "client CA CRL: $CRL_ENTRIES revoked serials, $(wc -c <"$PKI/client-ca.crl") bytes (PEM)"
  CURL_CERT=(--cert "$PKI/client.pem" --key "$PKI/client.key")
  OPENSSL_CERT=(-cert "$PKI/client.pem" -key "$PKI/client.key")
  MODE_NOTE=" (mutual TLS: client certificate required, CRL with $CRL_ENTRIES entries)"
  # Appended to lines of the configs below, so that without mTLS they stay as they were.
  # nginx's default ssl_verify_depth (1) is enough: the client CA signs the client certificate itself.
  NGINX_MTLS_HTTP="
  # mTLS check only (?mtlslog=1): did the client present its certificate, and did it verify?
  log_format mtls '\$ssl_protocol \$ssl_session_reused \$ssl_client_verify \$ssl_client_serial';"
  NGINX_MTLS_SERVER="
    ssl_verify_client on;
    ssl_client_certificate $PKI/client-ca.pem;
    ssl_crl $PKI/client-ca.crl;"
  NGINX_MTLS_LOCATION="
      access_log $WORK/nginx/logs/mtls.log mtls if=\$arg_mtlslog;"
  PCL_MTLS="
    clientAuth: { mode: require, ca: [$PKI/client-ca.pem], crl: [$PKI/client-ca.crl] }"
fi

# ---------------------------------------------------------------- configs
mapfile -t PORT_LIST < <(node bench/free-ports.js $((2 + ${#PCL_NAMES[@]})))
BACKEND_PORT=${PORT_LIST[0]} NGINX_PORT=${PORT_LIST[1]}
PROXY_PORT[nginx]=$NGINX_PORT
for i in "${!PCL_NAMES[@]}"; do PROXY_PORT[${PCL_NAMES[i]}]=${PORT_LIST[i + 2]}; done
log "ports: backend $BACKEND_PORT, nginx $NGINX_PORT$(for name in "${PCL_NAMES[@]}"; do printf ', %s %s' "$name" "${PROXY_PORT[$name]}"; done)"

# Common nginx main/events/http preamble: everything under its own prefix,
# nothing under /etc/nginx, /var/lib/nginx or /run.
nginx_preamble() { # PREFIX
  cat <<EOF
worker_processes 1;
pid $1/nginx.pid;
lock_file $1/nginx.lock;
error_log $1/logs/error.log warn;
events { worker_connections 4096; }
http {
  client_body_temp_path $1/tmp/body;
  proxy_temp_path $1/tmp/proxy;
  fastcgi_temp_path $1/tmp/fastcgi;
  uwsgi_temp_path $1/tmp/uwsgi;
  scgi_temp_path $1/tmp/scgi;
  access_log off;
  server_tokens off;
EOF
}

mkdir -p "$WORK/backend/logs" "$WORK/backend/tmp" "$WORK/nginx/logs" "$WORK/nginx/tmp"
{
  nginx_preamble "$WORK/backend"
  cat <<EOF
  server {
    listen 127.0.0.1:$BACKEND_PORT;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    location / { default_type text/plain; return 200 "ok\n"; }
  }
}
EOF
} >"$WORK/backend/nginx.conf"

# The nginx proxy does what Portcullis does per request, as far as nginx can:
# same TLS versions, AEAD suites, groups and server preference; X-Forwarded-*
# and X-Request-Id upstream; HSTS and X-Request-Id on the answer. Keep-alive
# limits are raised so that the keep-alive scenario never measures reconnects
# (nginx closes a client connection after 1000 requests by default; Node does not).
{
  nginx_preamble "$WORK/nginx"
  cat <<EOF
  # The session log is only written for the resumption check (?sessionlog=1), not the measured runs.
  log_format tls '\$ssl_protocol \$ssl_cipher \$ssl_session_reused';$NGINX_MTLS_HTTP
  upstream backend {
    server 127.0.0.1:$BACKEND_PORT;
    keepalive 32;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT ssl;
    server_name bench.test 127.0.0.1;
    ssl_certificate $PKI/leaf.pem;
    ssl_certificate_key $PKI/leaf.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
    ssl_prefer_server_ciphers on;
    ssl_ecdh_curve X25519:prime256v1:secp384r1;
    ssl_session_cache shared:SSL:10m;$NGINX_MTLS_SERVER
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    location / {
      access_log $WORK/nginx/logs/session.log tls if=\$arg_sessionlog;$NGINX_MTLS_LOCATION
      # both proxies log every request to a file, buffered (Portcullis: one JSON line per request)
      access_log $WORK/nginx/logs/access.log combined buffer=64k flush=1s;
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto https;
      proxy_set_header X-Forwarded-Host \$http_host;
      proxy_set_header X-Request-Id \$request_id;
      add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;
      add_header X-Request-Id \$request_id always;
    }
  }
}
EOF
} >"$WORK/nginx/nginx.conf"

# One config per Portcullis; each instance needs its own dataDir (it holds the control socket).
for name in "${PCL_NAMES[@]}"; do
  cat >"$WORK/$name.yaml" <<EOF
listen: { https: "127.0.0.1:${PROXY_PORT[$name]}" }
dataDir: $WORK/$name-data
log: { access: $WORK/$name-access.log }
sites:
  - hosts: [bench.test, 127.0.0.1]
    default: true
    certificates: [{ cert: $PKI/leaf.pem, key: $PKI/leaf.key }]$PCL_MTLS
    routes: [{ path: /, upstream: "http://127.0.0.1:$BACKEND_PORT" }]
EOF
done

# ---------------------------------------------------------------- start
for prefix in backend nginx; do
  "$NGINX" -t -q -p "$WORK/$prefix" -c "$WORK/$prefix/nginx.conf" -g 'daemon off;' 2>"$RESULTS/nginx-$prefix-t.log" ||
    die "nginx -t failed for the $prefix config: $(cat "$RESULTS/nginx-$prefix-t.log")"
done

taskset -c "$CLIENT_CPU" "$NGINX" -p "$WORK/backend" -c "$WORK/backend/nginx.conf" -g 'daemon off;' \
  >"$RESULTS/backend.out" 2>&1 &
BACKEND_PID=$!
PIDS+=("$BACKEND_PID")
taskset -c "$PROXY_CPU" "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' \
  >"$RESULTS/nginx.out" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
PROXY_PID[nginx]=$NGINX_PID
PROXY_LOG[nginx]=$WORK/nginx/logs/error.log
for name in "${PCL_NAMES[@]}"; do
  taskset -c "$PROXY_CPU" "${NODE_OF[$name]}" bin/portcullis.js start --config "$WORK/$name.yaml" \
    >"$WORK/$name.log" 2>&1 &
  PROXY_PID[$name]=$!
  PROXY_LOG[$name]=$WORK/$name.log
  PIDS+=($!)
done

wait_ready() { # NAME PID URL
  local code
  for _ in $(seq 200); do
    kill -0 "$2" 2>/dev/null || die "$1 exited during start-up; see $RESULTS"
    code=$(curl -sk "${CURL_CERT[@]}" -o /dev/null -w '%{http_code}' --max-time 1 "$3" || true)
    [[ $code == 200 ]] && return 0
    sleep 0.05
  done
  die "$1 did not answer 200 on $3 within 10 s (last status: $code)"
}
wait_ready backend "$BACKEND_PID" "http://127.0.0.1:$BACKEND_PORT/"
wait_ready nginx "$NGINX_PID" "https://127.0.0.1:$NGINX_PORT/"
for name in "${PCL_NAMES[@]}"; do wait_ready "$name" "${PROXY_PID[$name]}" "https://127.0.0.1:${PROXY_PORT[$name]}/"; done
log "backend, nginx and ${PCL_NAMES[*]} are up"

# ---------------------------------------------------------------- environment
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src 2>/dev/null || echo ' (src/ has uncommitted changes)')"
  echo "cpus: $(nproc) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'))"
  echo "kernel: $(uname -r)"
  for name in "${PCL_NAMES[@]}"; do
    echo "node ($name): $("${NODE_OF[$name]}" -v) at ${NODE_OF[$name]}, OpenSSL $("${NODE_OF[$name]}" -p process.versions.openssl)"
  done
  echo "nginx: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //')"
  echo "openssl (CLI, wrk, nginx): $(openssl version)"
  if [[ " $SCENARIOS " == *" full-tls13-pq "* || " $SCENARIOS " == *" full-tls13-classical "* ]]; then
    echo "client of full-tls13-pq/-classical: bench/full-handshakes.ts on Node $("$HS_NODE" -v) at $HS_NODE, OpenSSL $("$HS_NODE" -p process.versions.openssl)"
  fi
  echo "wrk: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
  echo "pinning: proxy under test on CPU $PROXY_CPU; load generator + backend on CPU $CLIENT_CPU"
  if [[ $MTLS == 1 ]]; then
    echo "mutual TLS: client certificate ECDSA P-256 (CN=bench-client, clientAuth) issued by a separate client CA; CRL of that CA with $CRL_ENTRIES revoked serials; portcullis clientAuth require + crl, nginx ssl_verify_client on + ssl_crl; s_time presents the client certificate"
  fi
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "sysctl: $(sysctl -n net.ipv4.tcp_tw_reuse 2>/dev/null | sed 's/^/tcp_tw_reuse=/'), somaxconn=$(sysctl -n net.core.somaxconn 2>/dev/null)"
  for target in nginx "${PCL_NAMES[@]}"; do
    for v in tls1_3 tls1_2; do
      echo "negotiated ($target, -$v): $(openssl s_client -connect "127.0.0.1:${PROXY_PORT[$target]}" -servername bench.test -"$v" "${OPENSSL_CERT[@]}" </dev/null 2>/dev/null |
        grep -E '^(New,|Peer signature type|Server Temp Key|Negotiated TLS1.3 group)' | tr '\n' ';' | sed 's/;$//')"
    done
  done
} >"$RESULTS/environment.txt"
sed 's/^/[bench]   /' "$RESULTS/environment.txt" >&2

# ---------------------------------------------------------------- measuring
CLK_TCK=$(getconf CLK_TCK)

# CPU ticks (user + system) of a process and its direct children (nginx workers).
cpu_ticks() { # PID
  local total=0 pid t
  for pid in "$1" $(pgrep -P "$1" || true); do
    t=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}') || t=0
    total=$((total + ${t:-0}))
  done
  echo "$total"
}

# One line of counters: wall ns, proxy ticks, backend ticks, ticks of this
# script's reaped children (wrk / s_time), then from /proc/stat: user+nice+system
# of all CPUs, irq+softirq of all CPUs, busy and total ticks of the proxy's core.
snapshot() { # PROXY_PID
  local self
  self=$(sed 's/^.*) //' "/proc/$$/stat" | awk '{print $14 + $15}')
  printf '%s %s %s %s ' "$(date +%s%N)" "$(cpu_ticks "$1")" "$(cpu_ticks "$BACKEND_PID")" "$self"
  awk -v c="cpu$PROXY_CPU" '
    $1 == "cpu" { u = $2 + $3 + $4; si = $7 + $8 }
    $1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; pb = t - $5 - $6; pt = t }
    END { print u, si, pb, pt }' /proc/stat
}

# From two snapshots and an operation count: elapsed s, proxy CPU %, proxy CPU µs/op,
# proxy core idle %, load generator + backend CPU %, CPU % of everything else
# (processes not started by this script: the measurement was disturbed when it is high).
cpu_figures() { # SNAP0 SNAP1 OPS
  awk -v a="$1" -v b="$2" -v n="$3" -v hz="$CLK_TCK" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    s = (y[1] - x[1]) / 1e9; proxy = y[2] - x[2]; backend = y[3] - x[3]; client = y[4] - x[4]
    # process times include the softirq work done on their behalf, so compare with user+system+irq
    other = (y[5] - x[5]) + (y[6] - x[6]) - proxy - backend - client; if (other < 0) other = 0
    idle = (y[8] - x[8]) > 0 ? 100 - 100 * (y[7] - x[7]) / (y[8] - x[8]) : 0
    printf "%.3f %.0f %s %.0f %.0f %.0f\n", s, 100 * proxy / hz / s, (n > 0 ? sprintf("%.0f", 1e6 * proxy / hz / n) : "-"),
      idle, 100 * (client + backend) / hz / s, 100 * other / hz / s
  }'
}

proxy_pid() { echo "${PROXY_PID[$1]}"; }
proxy_port() { echo "${PROXY_PORT[$1]}"; }
proxy_log() { echo "${PROXY_LOG[$1]}"; }
log_lines() { [[ -f $1 ]] && wc -l <"$1" || echo 0; }

# wrk prints latencies as 812.00us / 1.23ms / 1.02s
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /[0-9]s$/ && v !~ /ms$/) n *= 1000; printf "%.2f", n }'; }

RUNS="$RESULTS/runs.tsv"
printf '%s\t' scenario proxy round rate p50_ms p99_ms proxy_cpu_pct cpu_us_per_op proxy_core_idle_pct \
  loadgen_backend_cpu_pct other_cpu_pct non2xx socket_errors proxy_log_lines attempts >"$RUNS"
printf 'note\n' >>"$RUNS"

# The Node client of full-tls13-pq (the runtime's groups: X25519MLKEM768 and X25519 with
# key shares) and full-tls13-classical (X25519 with a key share, P-256 and P-384 listed).
run_node_handshakes() { # RAW SCENARIO PORT SECONDS
  local groups=()
  [[ $2 == full-tls13-classical ]] && groups=(--groups X25519:P-256:P-384)
  taskset -c "$CLIENT_CPU" "$HS_NODE" --import tsx bench/full-handshakes.ts --port "$3" --ca "$PKI/ca.pem" \
    --duration "$4" --concurrency "$HS_CLIENTS" "${groups[@]}" >"$1" 2>&1 || true
}

# Runs the load of one scenario against one port, raw output to $1.
run_load() { # RAW SCENARIO PORT
  local raw=$1 scenario=$2 port=$3
  case $scenario in
    keepalive) taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "https://127.0.0.1:$port/" >"$raw" 2>&1 || true ;;
    reconnect)
      taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H 'Connection: close' \
        "https://127.0.0.1:$port/" >"$raw" 2>&1 || true
      ;;
    full-tls13 | full-tls12)
      # s_time sends no SNI: both proxies answer with their default (only) site
      local version=tls1_3 i
      [[ $scenario == full-tls12 ]] && version=tls1_2
      for i in $(seq "$HS_CLIENTS"); do
        taskset -c "$CLIENT_CPU" openssl s_time -connect "127.0.0.1:$port" -new -"$version" "${OPENSSL_CERT[@]}" \
          -time "$DURATION" >"$raw.$i" 2>&1 &
        LOAD_PIDS+=($!)
      done
      for i in "${LOAD_PIDS[@]}"; do wait "$i" || true; done
      LOAD_PIDS=()
      for i in $(seq "$HS_CLIENTS"); do cat "$raw.$i"; done >"$raw"
      rm -f "$raw".[0-9]*
      ;;
    full-tls13-pq | full-tls13-classical) run_node_handshakes "$raw" "$scenario" "$port" "$DURATION" ;;
  esac
}

# Measures one scenario on one proxy and appends a row to runs.tsv. A run that
# other processes disturbed (other CPU above MAX_OTHER_PCT) is repeated, twice at
# most, and flagged if it still is. A dead proxy is reported, not hidden.
measure() { # SCENARIO PROXY ROUND
  local scenario=$1 proxy=$2 round=$3
  local pid port raw logf attempt lines0 snap0 snap1 ops rate p50=- p99=- non2xx=- sockerr=- figures note='' groups=''
  local elapsed cpu_pct cpu_us idle loadgen other new_lines
  pid=$(proxy_pid "$proxy") port=$(proxy_port "$proxy") logf=$(proxy_log "$proxy")
  for attempt in 1 2 3; do
    raw="$RESULTS/$scenario-$proxy-r$round.txt"
    ((attempt == 1)) || raw="${raw%.txt}-attempt$attempt.txt"
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$proxy is not running any more; skipping $scenario"
      printf '%s\t%s\t%s\tDEAD\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t%s\tproxy not running\n' "$scenario" "$proxy" "$round" "$attempt" >>"$RUNS"
      return
    fi
    if ((attempt == 1)); then log "$scenario / $proxy / round $round"; else log "$scenario / $proxy / round $round, attempt $attempt"; fi
    lines0=$(log_lines "$logf")
    snap0=$(snapshot "$pid")
    run_load "$raw" "$scenario" "$port"
    snap1=$(snapshot "$pid")
    case $scenario in
      keepalive | reconnect)
        ops=$(awk '/requests in/ { print $1 }' "$raw")
        p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$raw")")
        p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$raw")")
        non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$raw")
        sockerr=$(awk '/Socket errors:/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }' "$raw")
        ;;
      full-tls13-pq | full-tls13-classical)
        ops=$(awk '$1 == "handshakes:" { print $2 }' "$raw")
        sockerr=$(awk '$1 == "failed:" { print $2 }' "$raw")
        # the group of every handshake, and resumptions, which there must be none of
        groups=$(awk '$1 == "groups:" { sub(/^groups: /, ""); g = $0 } $1 == "resumed:" && $2 > 0 { r = "; " $2 " RESUMED" }
          END { print g r }' "$raw")
        ;;
      full-*)
        ops=$(awk '/connections in .* real seconds/ { n += $1 } END { print n + 0 }' "$raw")
        sockerr=$(grep -ciE 'error|errno' "$raw" || true)
        ;;
    esac
    read -r elapsed cpu_pct cpu_us idle loadgen other <<<"$(cpu_figures "$snap0" "$snap1" "${ops:-0}")"
    # requests (or handshakes) over the measured wall time; s_time's own clock has whole-second steps
    rate=$(awk -v n="${ops:-0}" -v s="$elapsed" 'BEGIN { printf "%.0f", n / s }')
    echo "# elapsed ${elapsed}s; counters before/after: $snap0 / $snap1" >>"$raw"
    new_lines=$(($(log_lines "$logf") - lines0))
    if ((new_lines > 0)); then tail -n "$new_lines" "$logf" >"${raw%.txt}.proxy.log"; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$proxy DIED during $scenario"
      note='proxy died'
      break
    fi
    ((other <= MAX_OTHER_PCT)) && break
    note="disturbed: other processes used ${other}% CPU"
    ((attempt < 3)) || { log "  other processes used ${other}% CPU again; keeping this run, flagged"; break; }
    log "  other processes used ${other}% CPU during this run (limit $MAX_OTHER_PCT%); repeating it"
    sleep 2
  done
  ((other <= MAX_OTHER_PCT)) && [[ $note != 'proxy died' ]] && note=''
  printf '%s\t' "$scenario" "$proxy" "$round" "$rate" "$p50" "$p99" "$cpu_pct" "$cpu_us" "$idle" "$loadgen" "$other" \
    "${non2xx:-0}" "${sockerr:-0}" "$new_lines" "$attempt" >>"$RUNS"
  printf '%s\n' "$note${groups:+${note:+; }$groups}" >>"$RUNS"
}

# Mutual TLS: before measuring, make sure the mode is really on and the load really
# presents the certificate. Fails loudly otherwise. Output in mtls-check.txt.
mtls_check() {
  local out="$RESULTS/mtls-check.txt" proxy port v code expect lines0 rejected hs n
  local -a tlsv
  log "mTLS checks: handshakes and requests with, without and with a revoked client certificate"
  : >"$out"
  for proxy in nginx "${PCL_NAMES[@]}"; do
    port=$(proxy_port "$proxy")
    for v in tls1_3 tls1_2; do
      openssl s_client -connect "127.0.0.1:$port" -servername bench.test -"$v" -CAfile "$PKI/ca.pem" -verify_return_error \
        "${OPENSSL_CERT[@]}" </dev/null >"$RESULTS/mtls-check-s_client-$proxy-$v.txt" 2>&1 ||
        die "mTLS: handshake with the client certificate failed ($proxy, -$v); see $RESULTS/mtls-check-s_client-$proxy-$v.txt"
      grep -q '^New, TLSv1' "$RESULTS/mtls-check-s_client-$proxy-$v.txt" ||
        die "mTLS: no completed handshake with the client certificate ($proxy, -$v); see $RESULTS/mtls-check-s_client-$proxy-$v.txt"
      echo "$proxy -$v handshake with client certificate: ok" >>"$out"
      if [[ $v == tls1_3 ]]; then tlsv=(--tlsv1.3); else tlsv=(--tlsv1.2 --tls-max 1.2); fi
      code=$(curl -sk "${tlsv[@]}" "${CURL_CERT[@]}" -o /dev/null -w '%{http_code}' --max-time 5 "https://127.0.0.1:$port/" || true)
      echo "$proxy -$v GET with client certificate: $code" >>"$out"
      [[ $code == 200 ]] || die "mTLS: $proxy answered $code, not 200, to a request with the client certificate (-$v)"
    done
    # refusals: no certificate (nginx 400, Portcullis 401) and the revoked one (nginx 400, Portcullis 403)
    for expect in none revoked; do
      if [[ $expect == none ]]; then
        code=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 5 "https://127.0.0.1:$port/" || true)
      else
        code=$(curl -sk --cert "$PKI/revoked.pem" --key "$PKI/revoked.key" -o /dev/null -w '%{http_code}' --max-time 5 \
          "https://127.0.0.1:$port/" || true)
      fi
      echo "$proxy GET with client certificate '$expect': $code" >>"$out"
      [[ $code != 200 ]] || die "mTLS: $proxy answered 200 to a request with client certificate '$expect': client verification or the CRL is not in effect"
    done
  done
  # Does `openssl s_time -new` (handshakes only, as measured) present the certificate?
  # Portcullis logs client_cert_rejected (no_certificate) for every handshake without one.
  for proxy in "${PCL_NAMES[@]}"; do
    port=$(proxy_port "$proxy")
    lines0=$(log_lines "$(proxy_log "$proxy")")
    openssl s_client -connect "127.0.0.1:$port" -servername bench.test -tls1_3 </dev/null >/dev/null 2>&1 || true
    sleep 0.2
    rejected=$(tail -n +"$((lines0 + 1))" "$(proxy_log "$proxy")" | grep -c '"reason":"no_certificate"' || true)
    echo "$proxy: handshake without a certificate logged $rejected no_certificate event(s)" >>"$out"
    ((rejected > 0)) || die "mTLS: $proxy did not log no_certificate for a handshake without a certificate; the s_time check below would prove nothing"
    lines0=$(log_lines "$(proxy_log "$proxy")")
    openssl s_time -connect "127.0.0.1:$port" -new -tls1_3 "${OPENSSL_CERT[@]}" -time 1 >"$RESULTS/mtls-check-s_time-$proxy.txt" 2>&1 || true
    sleep 0.2
    hs=$(awk '/connections in .* real seconds/ { n += $1 } END { print n + 0 }' "$RESULTS/mtls-check-s_time-$proxy.txt")
    rejected=$(tail -n +"$((lines0 + 1))" "$(proxy_log "$proxy")" | grep -c '"event":"client_cert_rejected"' || true)
    echo "$proxy: s_time -new with -cert: $hs handshakes, $rejected client_cert_rejected event(s)" >>"$out"
    ((hs > 0 && rejected == 0)) || die "mTLS: s_time against $proxy: $hs handshakes, $rejected refused client certificates (want >0 and 0)"
  done
  # nginx logs \$ssl_client_verify for s_time's request (-www) on ?mtlslog=1.
  openssl s_time -connect "127.0.0.1:$NGINX_PORT" -new -tls1_3 "${OPENSSL_CERT[@]}" -www '/?mtlslog=1' -time 1 \
    >"$RESULTS/mtls-check-s_time-nginx.txt" 2>&1 || true
  sleep 0.2
  hs=$(wc -l <"$WORK/nginx/logs/mtls.log" 2>/dev/null || echo 0)
  n=$(awk '$3 == "SUCCESS" { n++ } END { print n + 0 }' "$WORK/nginx/logs/mtls.log" 2>/dev/null || echo 0)
  echo "nginx: s_time -new -www with -cert: $hs requests logged, $n with \$ssl_client_verify SUCCESS ($(awk '{ print $1, $3 }' "$WORK/nginx/logs/mtls.log" 2>/dev/null | sort | uniq -c | sort -rn | head -1 | sed 's/^ *//'))" >>"$out"
  ((hs > 0 && n == hs)) || die "mTLS: s_time against nginx: $n of $hs requests had a verified client certificate"
  sed 's/^/[bench]   /' "$out" >&2
  cat "$out" >>"$RESULTS/environment.txt"
}

if [[ $MTLS == 1 ]]; then
  mtls_check
  # wrk cannot present a client certificate: warm up with handshakes instead
  log "warm-up: ${WARMUP_S}s of full TLS 1.3 handshakes with the client certificate on each proxy (not recorded)"
  for proxy in "${PROXIES[@]}"; do
    taskset -c "$CLIENT_CPU" openssl s_time -connect "127.0.0.1:$(proxy_port "$proxy")" -new -tls1_3 "${OPENSSL_CERT[@]}" \
      -time "$WARMUP_S" >"$RESULTS/warmup-$proxy.txt" 2>&1 || true
  done
else
  # Resumption check: does wrk with `Connection: close` resume? nginx logs it per request.
  log "checking whether wrk resumes TLS sessions on reconnect (nginx \$ssl_session_reused)"
  taskset -c "$CLIENT_CPU" wrk -t1 -c4 -d1s -H 'Connection: close' "https://127.0.0.1:$NGINX_PORT/?sessionlog=1" \
    >"$RESULTS/resumption-check-wrk.txt" 2>&1 || true
  RESUMED=$(awk '$3 == "r" { r++ } END { print r + 0 }' "$WORK/nginx/logs/session.log" 2>/dev/null || echo 0)
  TOTAL=$(wc -l <"$WORK/nginx/logs/session.log" 2>/dev/null || echo 0)
  PROTO=$(awk '{ print $1, $2 }' "$WORK/nginx/logs/session.log" 2>/dev/null | sort | uniq -c | sort -rn | head -1 | sed 's/^ *//')
  echo "wrk reconnect: $RESUMED of $TOTAL handshakes resumed (most common: $PROTO)" | tee -a "$RESULTS/environment.txt" >&2

  # The Node client's handshakes: which key shares it offers, whether the proxy asks for
  # another share (HelloRetryRequest), which group each handshake gets, and that none resumes.
  for scenario in $HS_PQ_SCENARIOS; do
    [[ " $SCENARIOS " == *" $scenario "* ]] || continue
    log "checking the $scenario client against each proxy (1 s each)"
    for proxy in "${PROXIES[@]}"; do
      raw="$RESULTS/group-check-$scenario-$proxy.txt"
      run_node_handshakes "$raw" "$scenario" "$(proxy_port "$proxy")" 1
      grep -q '^sample: ' "$raw" || die "the $scenario client got no handshake from $proxy; see $raw"
      echo "$scenario client vs $proxy: $(sed -n 's/^sample: //p' "$raw"); 1 s: $(sed -n 's/^groups: //p' "$raw"), resumed $(sed -n 's/^resumed: //p' "$raw"), failed $(sed -n 's/^failed: //p' "$raw")"
    done | tee -a "$RESULTS/environment.txt" >&2
  done

  log "warm-up: ${WARMUP_S}s keep-alive load on each proxy (not recorded)"
  for proxy in "${PROXIES[@]}"; do
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${WARMUP_S}s" "https://127.0.0.1:$(proxy_port "$proxy")/" \
      >"$RESULTS/warmup-$proxy.txt" 2>&1 || true
  done
fi

for round in $(seq "$ROUNDS"); do
  # alternate which proxy goes first, so drift (thermal, noisy neighbours) hits both
  order=()
  for i in "${!PROXIES[@]}"; do
    if ((round % 2)); then order+=("${PROXIES[i]}"); else order=("${PROXIES[i]}" "${order[@]}"); fi
  done
  scenarios=()
  for scenario in $SCENARIOS; do
    [[ $scenario == full-tls12 ]] && ((round > 1 || !TLS12)) && continue
    scenarios+=("$scenario")
  done
  for scenario in "${scenarios[@]}"; do
    for proxy in "${order[@]}"; do measure "$scenario" "$proxy" "$round"; done
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
  echo "peak RSS: $(for name in "${PCL_NAMES[@]}"; do printf '%s %s, ' "$name" "$(peak_rss_mb "${PROXY_PID[$name]}")"; done)nginx proxy $(peak_rss_mb "$NGINX_PID") (master + worker)"
  for name in "${PCL_NAMES[@]}"; do
    echo "$name log, lines by level/event/reason/detail: $(awk '
      { key = ""
        n = split("level event reason detail", names, " ")
        for (i = 1; i <= n; i++) if (match($0, "\"" names[i] "\":\"[^\"]*\"")) key = key (key == "" ? "" : "/") substr($0, RSTART + length(names[i]) + 4, RLENGTH - length(names[i]) - 5)
        count[key]++ }
      END { for (k in count) printf "%s%d x %s", (sep++ ? "; " : ""), count[k], k }' "$WORK/$name.log")"
  done
  echo "nginx proxy error log (warn and above): $(wc -l <"$WORK/nginx/logs/error.log") lines; backend: $(wc -l <"$WORK/backend/logs/error.log") lines"
} >>"$RESULTS/environment.txt"

report() {
  echo "### Summary$MODE_NOTE: mean of $ROUNDS round(s), ${DURATION}s per run ($(date -u +%Y-%m-%d))"
  echo
  # one column per proxy, then each Portcullis / nginx, then each later Portcullis / the first
  awk -F'\t' -v proxies="${PROXIES[*]}" '
    BEGIN {
      np = split(proxies, P, " ")
      for (i = 1; i <= np; i++) {
        label[i] = P[i] == "nginx" ? "nginx" : "Portcullis" substr(P[i], 11)
        if (P[i] != "nginx") pcl[++npcl] = i; else ng = i
      }
      head = "| scenario | metric |"; rule = "|---|---|"
      for (i = 1; i <= np; i++) { head = head " " label[i] " |"; rule = rule "---:|" }
      for (j = 1; j <= npcl; j++) { head = head " " label[pcl[j]] " / nginx |"; rule = rule "---:|" }
      for (j = 2; j <= npcl; j++) { head = head " " label[pcl[j]] " / " label[pcl[1]] " |"; rule = rule "---:|" }
      print head; print rule
    }
    NR == 1 || $4 == "DEAD" { next }
    { k = $1 SUBSEP $2; n[k]++; rate[k] += $4; cpu[k] += $7; us[k] += $8; cap[k] += ($8 > 0 ? 1e6 / $8 : 0)
      idle[k] += $9; lg[k] += $10; if ($5 != "-") { p50[k] += $5; p99[k] += $6 } }
    !($1 in seen) { seen[$1] = 1; order[++m] = $1 }
    function mean(a, k) { return n[k] ? a[k] / n[k] : 0 }
    function ratio(x, y) { return y > 0 ? sprintf("%.2f", x / y) : "" }
    function row(s, label, a, fmt, ratios,    i, j, v, line) {
      for (i = 1; i <= np; i++) v[i] = mean(a, s SUBSEP P[i])
      line = "| " s " | " label " |"
      for (i = 1; i <= np; i++) line = line " " sprintf(fmt, v[i]) " |"
      for (j = 1; j <= npcl; j++) line = line " " (ratios ? ratio(v[pcl[j]], v[ng]) : "") " |"
      for (j = 2; j <= npcl; j++) line = line " " (ratios ? ratio(v[pcl[j]], v[pcl[1]]) : "") " |"
      print line
    }
    END {
      for (i = 1; i <= m; i++) {
        s = order[i]; full = s ~ /^full/
        row(s, full ? "**handshakes/s**" : "**req/s**", rate, "%.0f", 1)
        if (!full) { row(s, "p50 latency ms", p50, "%.2f", 1); row(s, "p99 latency ms", p99, "%.2f", 1) }
        row(s, "proxy CPU, % of its core", cpu, "%.0f", 0)
        row(s, "proxy core idle %", idle, "%.0f", 0)
        row(s, "load generator + backend CPU %", lg, "%.0f", 0)
        row(s, "proxy CPU µs per " (full ? "handshake" : "request"), us, "%.0f", 1)
        row(s, "ceiling at 100% of one core (estimate: 10⁶ / µs)", cap, "%.0f", 1)
      }
    }' "$RUNS"
  echo
  echo "### Every run"
  echo
  echo "| scenario | proxy | round | rate /s | p50 ms | p99 ms | proxy CPU % | CPU µs/op | proxy core idle % | load gen + backend CPU % | other CPU % | non-2xx | socket errors | proxy log lines | attempts | note |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  awk -F'\t' 'NR > 1 { line = "|"; for (i = 1; i <= 16; i++) line = line " " $i " |"; print line }' "$RUNS"
  echo
  echo "Proxy core idle near 0: the proxy was the limit. Load generator + backend near 100 % with the"
  echo "proxy core idle: the single load-generator core was the limit, and only CPU µs per operation compares"
  echo "the proxies. Other CPU %: processes this script did not start (runs above $MAX_OTHER_PCT % are repeated)."
  echo
  echo "Environment:"
  echo
  sed 's/^/    /' "$RESULTS/environment.txt"
}
report | tee "$RESULTS/summary.md"
log "raw output in ${RESULTS#"$ROOT"/}"
