# Checks before measuring, for bench/run.sh (sourced): that each mode is really on and
# that each client really does what its scenario claims. Each fails loudly (die) or
# records what it saw in environment.txt.

# Does `openssl s_time -new` (handshakes only, as measured) present the client certificate?
# In TLS 1.3 the client's handshake completes before the server has checked its certificate,
# so s_time's count alone proves nothing; each product's own record is read instead.
s_time_presents_certificate() { # NAME
  local name=$1 port=${PROXY_PORT[$1]} logf=${PROXY_LOG[$1]} lines0 rejected hs n mlog
  case ${PRODUCT_OF[$name]} in
    portcullis)
      # Portcullis logs client_cert_rejected (no_certificate) for every handshake without one
      lines0=$(log_lines "$logf")
      openssl s_client -connect "127.0.0.1:$port" -servername bench.test -tls1_3 </dev/null >/dev/null 2>&1 || true
      sleep 0.2
      rejected=$(tail -n +"$((lines0 + 1))" "$logf" | grep -c '"reason":"no_certificate"' || true)
      echo "$name: handshake without a certificate logged $rejected no_certificate event(s)"
      ((rejected > 0)) || die "mTLS: $name did not log no_certificate for a handshake without a certificate; the s_time check would prove nothing"
      lines0=$(log_lines "$logf")
      openssl s_time -connect "127.0.0.1:$port" -new -tls1_3 "${OPENSSL_CERT[@]}" -time 1 >"$RESULTS/mtls-check-s_time-$name.txt" 2>&1 || true
      sleep 0.2
      hs=$(awk '/connections in .* real seconds/ { n += $1 } END { print n + 0 }' "$RESULTS/mtls-check-s_time-$name.txt")
      rejected=$(tail -n +"$((lines0 + 1))" "$logf" | grep -c '"event":"client_cert_rejected"' || true)
      echo "$name: s_time -new with -cert: $hs handshakes, $rejected client_cert_rejected event(s)"
      ((hs > 0 && rejected == 0)) || die "mTLS: s_time against $name: $hs handshakes, $rejected refused client certificates (want >0 and 0)"
      ;;
    nginx | haproxy)
      # both log the verification result of s_time's requests (-www /?mtlslog=1): nginx
      # \$ssl_client_verify SUCCESS in its mtls log, HAProxy c_used=1 c_verify=0 in its access log
      local verified=' SUCCESS '
      mlog=$WORK/nginx/logs/mtls.log
      [[ $name == nginx ]] || { mlog=${STDOUT_FILE[$name]} verified=' c_used=1 c_verify=0'; }
      lines0=$(log_lines "$mlog")
      openssl s_time -connect "127.0.0.1:$port" -new -tls1_3 "${OPENSSL_CERT[@]}" -www '/?mtlslog=1' -time 1 \
        >"$RESULTS/mtls-check-s_time-$name.txt" 2>&1 || true
      sleep 0.2
      hs=$(tail -n +"$((lines0 + 1))" "$mlog" | grep -c 'mtlslog=1' || true)
      n=$(tail -n +"$((lines0 + 1))" "$mlog" | grep 'mtlslog=1' | grep -c -- "$verified" || true)
      echo "$name: s_time -new -www with -cert: $hs requests logged, $n with a verified client certificate"
      ((hs > 0 && n == hs)) || die "mTLS: s_time against $name: $n of $hs requests had a verified client certificate; see $mlog"
      ;;
    node-bare)
      # Node refuses a handshake without a valid certificate (rejectUnauthorized), so only a
      # client that sent one reads an answer: s_time -www must read bytes with -cert, none without
      local with without
      openssl s_time -connect "127.0.0.1:$port" -new -tls1_3 "${OPENSSL_CERT[@]}" -www / -time 1 >"$RESULTS/mtls-check-s_time-$name.txt" 2>&1 || true
      openssl s_time -connect "127.0.0.1:$port" -new -tls1_3 -www / -time 1 >"$RESULTS/mtls-check-s_time-$name-nocert.txt" 2>&1 || true
      with=$(awk '/bytes read per connection/ { b = $(NF - 4) } END { print b + 0 }' "$RESULTS/mtls-check-s_time-$name.txt")
      without=$(awk '/bytes read per connection/ { b = $(NF - 4) } END { print b + 0 }' "$RESULTS/mtls-check-s_time-$name-nocert.txt")
      echo "$name: s_time -new -www with -cert: $with bytes read per connection; without: $without"
      ((with > 0 && without == 0)) || die "mTLS: s_time against $name read $with bytes per connection with the certificate and $without without (want >0 and 0)"
      ;;
    *) die "mTLS: no s_time check for ${PRODUCT_OF[$name]}" ;;
  esac
}

# Mutual TLS: before measuring, make sure the mode is really on and the load really
# presents the certificate. Output in mtls-check.txt.
mtls_check() {
  local out="$RESULTS/mtls-check.txt" name port v code expect raw
  local -a tlsv
  log "mTLS checks: handshakes and requests with, without and with a revoked client certificate"
  for name in "${INSTANCES[@]}"; do
    port=${PROXY_PORT[$name]}
    for v in tls1_3 tls1_2; do
      raw="$RESULTS/mtls-check-s_client-$name-$v.txt"
      openssl s_client -connect "127.0.0.1:$port" -servername bench.test -"$v" -CAfile "$PKI/ca.pem" -verify_return_error \
        "${OPENSSL_CERT[@]}" </dev/null >"$raw" 2>&1 || die "mTLS: handshake with the client certificate failed ($name, -$v); see $raw"
      grep -q '^New, TLSv1' "$raw" || die "mTLS: no completed handshake with the client certificate ($name, -$v); see $raw"
      echo "$name -$v handshake with client certificate: ok"
      if [[ $v == tls1_3 ]]; then tlsv=(--tlsv1.3); else tlsv=(--tlsv1.2 --tls-max 1.2); fi
      code=$(curl -sk "${tlsv[@]}" "${CURL_CERT[@]}" -o /dev/null -w '%{http_code}' --max-time 5 "https://127.0.0.1:$port/" || true)
      echo "$name -$v GET with client certificate: $code"
      [[ $code == 200 ]] || die "mTLS: $name answered $code, not 200, to a request with the client certificate (-$v)"
    done
    # refusals: no certificate and the revoked one (an HTTP error, or no answer when the handshake fails: 000)
    for expect in none revoked; do
      if [[ $expect == none ]]; then
        code=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 5 "https://127.0.0.1:$port/" || true)
      else
        code=$(curl -sk --cert "$PKI/revoked.pem" --key "$PKI/revoked.key" -o /dev/null -w '%{http_code}' --max-time 5 \
          "https://127.0.0.1:$port/" || true)
      fi
      echo "$name GET with client certificate '$expect': $code"
      [[ $code != 200 ]] || die "mTLS: $name answered 200 to a request with client certificate '$expect': client verification or the CRL is not in effect"
    done
    [[ " $SCENARIOS " == *" full-tls1"* ]] && s_time_presents_certificate "$name"
  done >"$out"
  sed 's/^/[bench]   /' "$out" >&2
  cat "$out" >>"$RESULTS/environment.txt"
}

# The new-conn client, 1 s per proxy: full handshakes only (isSessionReused), every answer a
# complete 200. In mTLS mode the 200s prove the client certificate was presented and accepted,
# and a run without it must get no 200 at all (else the proxy did not require it).
new_conn_check() {
  local name raw ok
  log "checking the new-conn client against each proxy (1 s each)"
  for name in "${INSTANCES[@]}"; do
    raw="$RESULTS/new-conn-check-$name.txt"
    run_node_client "$raw" new-conn "${PROXY_PORT[$name]}" 1 "${NODE_CERT[@]}"
    ok=$(awk '$1 == "handshakes:" { print $2 }' "$raw")
    echo "new-conn client vs $name: $(sed -n 's/^sample: //p' "$raw"); 1 s: ${ok:-0} connections with a 200, resumed $(sed -n 's/^resumed: //p' "$raw"), failed $(sed -n 's/^failed: //p' "$raw")$(sed -n 's/^failure: / (/p' "$raw" | tr '\n' ')')"
    grep -q '^resumed: 0$' "$raw" && grep -q '^failed: 0$' "$raw" && ((${ok:-0} > 0)) ||
      die "the new-conn client against $name: ${ok:-0} good connections, not all full handshakes answered 200; see $raw"
    if [[ $MTLS == 1 ]]; then
      raw="$RESULTS/new-conn-check-$name-without-certificate.txt"
      run_node_client "$raw" new-conn "${PROXY_PORT[$name]}" 1
      ok=$(awk '$1 == "handshakes:" { print $2 }' "$raw")
      echo "new-conn client vs $name without its certificate: ${ok:-0} connections with a 200 (want 0), $(sed -n 's/^failure: //p' "$raw" | tr '\n' ' ')"
      ((${ok:-0} == 0)) || die "the new-conn client got 200 from $name without a client certificate; see $raw"
    fi
  done | tee -a "$RESULTS/environment.txt" >&2
}

# Does wrk with `Connection: close` resume? nginx logs it per request.
wrk_resumption_check() {
  local session_log=$WORK/nginx/logs/session.log resumed total proto
  log "checking whether wrk resumes TLS sessions on reconnect (nginx \$ssl_session_reused)"
  taskset -c "$CLIENT_CPU" wrk -t1 -c4 -d1s -H 'Connection: close' "https://127.0.0.1:${PROXY_PORT[nginx]}/?sessionlog=1" \
    >"$RESULTS/resumption-check-wrk.txt" 2>&1 || true
  resumed=$(awk '$3 == "r" { r++ } END { print r + 0 }' "$session_log" 2>/dev/null || echo 0)
  total=$(wc -l <"$session_log" 2>/dev/null || echo 0)
  proto=$(awk '{ print $1, $2 }' "$session_log" 2>/dev/null | sort | uniq -c | sort -rn | head -1 | sed 's/^ *//')
  echo "wrk reconnect: $resumed of $total handshakes resumed (most common: $proto)" | tee -a "$RESULTS/environment.txt" >&2
}

# The post-quantum scenarios' client: which key shares it offers, whether the proxy asks for
# another share (HelloRetryRequest), which group each handshake gets, and that none resumes.
group_check() { # SCENARIO
  local name raw
  log "checking the $1 client against each proxy (1 s each)"
  for name in "${INSTANCES[@]}"; do
    raw="$RESULTS/group-check-$1-$name.txt"
    run_node_client "$raw" "$1" "${PROXY_PORT[$name]}" 1
    grep -q '^sample: ' "$raw" || die "the $1 client got no handshake from $name; see $raw"
    echo "$1 client vs $name: $(sed -n 's/^sample: //p' "$raw"); 1 s: $(sed -n 's/^groups: //p' "$raw"), resumed $(sed -n 's/^resumed: //p' "$raw"), failed $(sed -n 's/^failed: //p' "$raw")"
  done | tee -a "$RESULTS/environment.txt" >&2
}

# h2load really speaks h2 to each proxy (it offers h2 only; a proxy without it fails the run).
h2_check() {
  local name raw
  log "checking that each proxy negotiates h2 with h2load"
  for name in "${INSTANCES[@]}"; do
    raw="$RESULTS/h2-check-$name.txt"
    taskset -c "$CLIENT_CPU" h2load -n 20 -c 2 "https://127.0.0.1:${PROXY_PORT[$name]}/" >"$raw" 2>&1 || true
    grep -q '^Application protocol: h2$' "$raw" && grep -q 'status codes: 20 2xx' "$raw" ||
      die "h2load did not get 20 answers 200 over h2 from $name; see $raw"
    echo "h2load vs $name: $(grep -E '^(TLS Protocol|Cipher|Server Temp Key|Application protocol):' "$raw" | tr '\n' ';' | sed 's/;$//')"
  done | tee -a "$RESULTS/environment.txt" >&2
}

# Each proxy passes the backend's 1 MiB answer whole (the large scenario's path).
large_check() {
  local name got
  for name in "${INSTANCES[@]}"; do
    got=$(curl -sk "${CURL_CERT[@]}" -o /dev/null -w '%{http_code} %{size_download}' --max-time 10 "https://127.0.0.1:${PROXY_PORT[$name]}/1m" || true)
    [[ $got == '200 1048576' ]] || die "GET /1m through $name: '$got', not '200 1048576'"
  done
  echo "GET /1m: 200 with 1048576 bytes through each proxy" | tee -a "$RESULTS/environment.txt" >&2
}
