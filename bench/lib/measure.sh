# Load generation and CPU accounting for bench/run.sh (sourced): one function per
# concern, `measure` ties them into one row of runs.tsv per run.

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
# script's reaped children (the load generators), then from /proc/stat: user+nice+system
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

log_lines() { [[ -f $1 ]] && wc -l <"$1" || echo 0; }

# wrk prints latencies as 812.00us / 1.23ms / 1.02s
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /[0-9]s$/ && v !~ /ms$/) n *= 1000; printf "%.2f", n }'; }

# bench/full-handshakes.ts, the Node client of three scenarios:
#   full-tls13-pq         the runtime's groups (Node 24: X25519MLKEM768 and X25519 with key shares), no SNI, no request
#   full-tls13-classical  X25519 with a key share, P-256 and P-384 listed, no SNI, no request
#   new-conn              the classical groups, SNI bench.test, one GET / (Connection: close) per
#                         connection, NEW_CONNS connections in flight; on the first of BENCH_NODES
# Extra arguments (the client certificate) go to the client as they are.
run_node_client() { # RAW SCENARIO PORT SECONDS [CLIENT ARGS...]
  local raw=$1 scenario=$2 port=$3 seconds=$4 node=$HS_NODE args=()
  shift 4
  case $scenario in
    full-tls13-pq) args=(--concurrency "$HS_CLIENTS") ;;
    full-tls13-classical) args=(--concurrency "$HS_CLIENTS" --groups X25519:P-256:P-384) ;;
    new-conn)
      node=$CLIENT_NODE
      args=(--concurrency "$NEW_CONNS" --groups X25519:P-256:P-384 --servername bench.test --request /)
      ;;
  esac
  taskset -c "$CLIENT_CPU" "$node" --import tsx bench/full-handshakes.ts --port "$port" --ca "$PKI/ca.pem" \
    --duration "$seconds" "${args[@]}" "$@" >"$raw" 2>&1 || true
}

run_wrk() { # RAW PORT PATH [WRK ARGS...]
  local raw=$1 port=$2 path=$3
  shift 3
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$@" "https://127.0.0.1:$port$path" >"$raw" 2>&1 || true
}

# Runs the load of one scenario against one port, raw output to $1.
run_load() { # RAW SCENARIO PORT
  local raw=$1 scenario=$2 port=$3
  case $scenario in
    keepalive) run_wrk "$raw" "$port" / ;;
    reconnect) run_wrk "$raw" "$port" / -H 'Connection: close' ;;
    large) run_wrk "$raw" "$port" /1m ;;
    h2)
      # h2load offers ALPN h2 only and sends no SNI (the proxies serve their default site).
      # h2load 1.52 with -D sometimes never exits after "Stopped all clients" (seen with nginx):
      # timeout ends it, and the run is reported as not finished rather than hanging the bench.
      taskset -c "$CLIENT_CPU" timeout -k 5 $((DURATION + 15)) h2load -t1 -c"$H2_CONNS" -m"$H2_STREAMS" -D"$DURATION" \
        "https://127.0.0.1:$port/" >"$raw" 2>&1 || true
      ;;
    full-tls13 | full-tls12)
      # s_time sends no SNI: the proxies answer with their default (only) site
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
    full-tls13-pq | full-tls13-classical) run_node_client "$raw" "$scenario" "$port" "$DURATION" ;;
    new-conn) run_node_client "$raw" "$scenario" "$port" "$DURATION" "${NODE_CERT[@]}" ;;
  esac
}

# Reads a run's raw output into OPS P50 P99 NON2XX SOCKERR NOTE (the caller's locals).
parse_load() { # RAW SCENARIO
  local raw=$1
  case $2 in
    keepalive | reconnect | large)
      OPS=$(awk '/requests in/ { print $1 }' "$raw")
      P50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$raw")")
      P99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$raw")")
      NON2XX=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$raw")
      SOCKERR=$(awk '/Socket errors:/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }' "$raw")
      ;;
    h2)
      # requests: T total, S started, D done, OK succeeded, F failed, E errored, X timeout
      OPS=$(awk '$1 == "requests:" { print $8 }' "$raw")
      NON2XX=$(awk '$1 == "status" && $2 == "codes:" { print $5 + $7 + $9 }' "$raw")
      SOCKERR=$(awk '$1 == "requests:" { print $10 + $12 + $14 }' "$raw")
      grep -q '^Application protocol: h2$' "$raw" || NOTE='NOT h2'
      grep -q '^finished in ' "$raw" || NOTE='h2load hung and was killed: no figures'
      ;;
    full-tls13-pq | full-tls13-classical | new-conn)
      OPS=$(awk '$1 == "handshakes:" { print $2 }' "$raw")
      # answers other than a complete 200 are failures named http_*; the rest are connection errors
      NON2XX=$(awk '$1 == "failure:" && $2 ~ /^http_/ { n += $3 } END { print n + 0 }' "$raw")
      SOCKERR=$(awk '$1 == "failed:" { f = $2 } $1 == "failure:" && $2 ~ /^http_/ { f -= $3 } END { print f + 0 }' "$raw")
      # the group of every handshake, and resumptions, which there must be none of
      NOTE=$(awk '$1 == "groups:" { sub(/^groups: /, ""); g = $0 } $1 == "resumed:" && $2 > 0 { r = "; " $2 " RESUMED" }
        END { print g r }' "$raw")
      ;;
    full-*)
      OPS=$(awk '/connections in .* real seconds/ { n += $1 } END { print n + 0 }' "$raw")
      SOCKERR=$(grep -ciE 'error|errno' "$raw" || true)
      ;;
  esac
}

# Measures one scenario on one proxy and appends a row to runs.tsv. A run that
# other processes disturbed (other CPU above MAX_OTHER_PCT) is repeated, twice at
# most, and flagged if it still is. A dead proxy is reported, not hidden.
measure() { # SCENARIO PROXY ROUND
  local scenario=$1 proxy=$2 round=$3
  local pid=${PROXY_PID[$2]} port=${PROXY_PORT[$2]} logf=${PROXY_LOG[$2]} raw attempt lines0 snap0 snap1 rate note=''
  local OPS P50 P99 NON2XX SOCKERR NOTE elapsed cpu_pct cpu_us idle loadgen other new_lines
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
    OPS=0 P50=- P99=- NON2XX=0 SOCKERR=0 NOTE=''
    parse_load "$raw" "$scenario"
    read -r elapsed cpu_pct cpu_us idle loadgen other <<<"$(cpu_figures "$snap0" "$snap1" "${OPS:-0}")"
    # operations over the measured wall time; s_time's own clock has whole-second steps
    rate=$(awk -v n="${OPS:-0}" -v s="$elapsed" 'BEGIN { printf "%.0f", n / s }')
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
  printf '%s\t' "$scenario" "$proxy" "$round" "$rate" "${P50:--}" "${P99:--}" "$cpu_pct" "$cpu_us" "$idle" "$loadgen" "$other" \
    "${NON2XX:-0}" "${SOCKERR:-0}" "$new_lines" "$attempt" >>"$RUNS"
  printf '%s\n' "$note${NOTE:+${note:+; }$NOTE}" >>"$RUNS"
}
