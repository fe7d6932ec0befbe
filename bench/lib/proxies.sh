# The proxies under test, for bench/run.sh (sourced). Adding a product is one row in
# PRODUCTS and one bench/lib/proxy-PRODUCT.sh defining:
#   PRODUCT_config NAME PORT   write the config (sets CONFIG_FILE[NAME]; may set PROXY_LOG[NAME],
#                              the file of its own messages, default its stdout + stderr, and
#                              STDOUT_FILE[NAME] when stdout is something else, e.g. an access log)
#   PRODUCT_command NAME       set CMD to the foreground command that serves the config
#   PRODUCT_version [NAME]     one line for the environment
# An instance is named after its product, except Portcullis's (one per BENCH_NODES entry).

# Every proxy gets the same TLS 1.2 suites (ECDHE AEAD only, in this order) and TLS 1.3 suites.
TLS12_CIPHERS=ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305
TLS13_SUITES=TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
# the same TLS 1.2 list in Go's names
CADDY_TLS12_CIPHERS='TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256'

# product | binary variable | executable names | Debian package | runs with BENCH_MTLS=1
PRODUCTS='
portcullis - - - yes
nginx NGINX nginx nginx-light yes
caddy CADDY caddy caddy no:Caddy 2.6 cannot check a CRL
haproxy HAPROXY haproxy haproxy yes
node-bare - - - yes
'
for product in portcullis nginx caddy haproxy node-bare; do
  # shellcheck source=/dev/null
  source "$(dirname "${BASH_SOURCE[0]}")/proxy-$product.sh"
done

declare -A PRODUCT_OF=() PROXY_PID=() PROXY_PORT=() PROXY_LOG=() CONFIG_FILE=() STDOUT_FILE=()
INSTANCES=()

# Finds the binary of each product of BENCH_PROXIES and sets INSTANCES; a product that
# is not installed, or cannot run in this mode, is left out with a log line.
select_proxies() { # PRODUCT...
  local product var exe package mtls path name
  for product in "$@"; do
    read -r _ var exe package mtls < <(awk -v p="$product" '$1 == p' <<<"$PRODUCTS") ||
      die "BENCH_PROXIES: unknown proxy '$product'; choose from $(awk 'NF { printf "%s ", $1 }' <<<"$PRODUCTS")"
    if [[ $product == portcullis ]]; then
      for name in "${PCL_NAMES[@]}"; do INSTANCES+=("$name") PRODUCT_OF[$name]=portcullis; done
      continue
    fi
    if [[ $exe == - ]]; then # ours, run by Node: nothing to look for
      INSTANCES+=("$product") PRODUCT_OF[$product]=$product
      continue
    fi
    path=$(command -v "$exe" || true)
    [[ -z $path && -x /usr/sbin/$exe ]] && path=/usr/sbin/$exe
    if [[ -z $path ]]; then
      log "$product is not installed: leaving it out (apt-get install -y $package)"
      continue
    fi
    if [[ $MTLS == 1 && $mtls != yes ]]; then
      log "leaving $product out of the mutual TLS run: ${mtls#no:}"
      continue
    fi
    printf -v "$var" '%s' "$path"
    INSTANCES+=("$product") PRODUCT_OF[$product]=$product
  done
  ((${#INSTANCES[@]})) || die "BENCH_PROXIES='$*': none of them can run here"
}

start_proxy() { # NAME
  local name=$1 product=${PRODUCT_OF[$1]}
  PROXY_LOG[$name]=$WORK/$name.out
  "${product}_config" "$name" "${PROXY_PORT[$name]}"
  "${product}_command" "$name"
  if [[ -n ${STDOUT_FILE[$name]:-} ]]; then
    taskset -c "$PROXY_CPU" "${CMD[@]}" >"${STDOUT_FILE[$name]}" 2>"$WORK/$name.out" &
  else
    taskset -c "$PROXY_CPU" "${CMD[@]}" >"$WORK/$name.out" 2>&1 &
  fi
  PROXY_PID[$name]=$!
  PIDS+=($!)
}

proxy_version() { # NAME
  "${PRODUCT_OF[$1]}_version" "$1"
}

# Waits until URL answers 200 (with the client certificate in mTLS mode).
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

# Keeps each instance's config and logs next to the figures (called on exit).
keep_proxy_files() {
  local name
  for name in "${INSTANCES[@]}"; do
    cp -f "${CONFIG_FILE[$name]:-/nonexistent}" "$RESULTS/$name-${CONFIG_FILE[$name]##*/}" 2>/dev/null || true
    cp -f "$WORK/$name.out" "$RESULTS/$name.out" 2>/dev/null || true
    [[ ${PROXY_LOG[$name]:-} == "$WORK/$name.out" ]] || cp -f "${PROXY_LOG[$name]:-/nonexistent}" "$RESULTS/$name.log" 2>/dev/null || true
  done
}
