# The results tables of bench/run.sh (sourced), from runs.tsv: the median of the rounds
# per proxy and scenario, ratios of each Portcullis to each other proxy, and every run.

# The table's name for an instance: Portcullis[@VERSION], nginx, Caddy, HAProxy.
proxy_label() { # NAME
  case $1 in
    portcullis*) echo "Portcullis${1#portcullis}" ;;
    caddy) echo Caddy ;;
    haproxy) echo HAProxy ;;
    *) echo "$1" ;;
  esac
}

summary_table() {
  local labels=() name
  for name in "${INSTANCES[@]}"; do labels+=("$(proxy_label "$name")"); done
  # one column per proxy, then each Portcullis / each other proxy, then each later Portcullis / the first
  awk -F'\t' -v proxies="${INSTANCES[*]}" -v labels="${labels[*]}" '
    BEGIN {
      np = split(proxies, P, " "); split(labels, L, " ")
      for (i = 1; i <= np; i++) if (P[i] ~ /^portcullis/) pcl[++npcl] = i; else oth[++noth] = i
      head = "| scenario | metric |"; rule = "|---|---|"
      for (i = 1; i <= np; i++) { head = head " " L[i] " |"; rule = rule "---:|" }
      for (j = 1; j <= npcl; j++) for (o = 1; o <= noth; o++) { head = head " " L[pcl[j]] " / " L[oth[o]] " |"; rule = rule "---:|" }
      for (j = 2; j <= npcl; j++) { head = head " " L[pcl[j]] " / " L[pcl[1]] " |"; rule = rule "---:|" }
      print head; print rule
    }
    function add(a, k, v) { if (v != "-" && v != "") a[k] = a[k] " " v }
    NR == 1 || $4 == "DEAD" { next }
    { k = $1 SUBSEP $2; add(rate, k, $4); add(p50, k, $5); add(p99, k, $6); add(cpu, k, $7); add(us, k, $8)
      if ($8 != "-" && $8 > 0) add(cap, k, 1e6 / $8)
      add(idle, k, $9); add(lg, k, $10) }
    !($1 in seen) { seen[$1] = 1; order[++m] = $1 }
    # the median of the values of one key ("" when none): robust to one disturbed round of three
    function median(s,    a, n, i, j, t) {
      n = split(s, a, " "); if (n == 0) return ""
      for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return n % 2 ? a[(n + 1) / 2] + 0 : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function ratio(x, y) { return x != "" && y != "" && y > 0 ? sprintf("%.2f", x / y) : "" }
    function row(s, label, a, fmt, ratios,    i, j, o, v, line, any) {
      for (i = 1; i <= np; i++) { v[i] = median(a[s SUBSEP P[i]]); if (v[i] != "") any = 1 }
      if (!any) return
      line = "| " s " | " label " |"
      for (i = 1; i <= np; i++) line = line " " (v[i] == "" ? "" : sprintf(fmt, v[i])) " |"
      for (j = 1; j <= npcl; j++) for (o = 1; o <= noth; o++) line = line " " (ratios ? ratio(v[pcl[j]], v[oth[o]]) : "") " |"
      for (j = 2; j <= npcl; j++) line = line " " (ratios ? ratio(v[pcl[j]], v[pcl[1]]) : "") " |"
      print line
    }
    END {
      for (i = 1; i <= m; i++) {
        s = order[i]
        if (s ~ /^full/) { what = "**handshakes/s**"; per = "handshake" }
        else if (s == "new-conn") { what = "**connections/s**"; per = "connection" }
        else if (s == "large") { what = "**req/s** (1 MiB each)"; per = "request" }
        else { what = "**req/s**"; per = "request" }
        row(s, what, rate, "%.0f", 1)
        row(s, "p50 latency ms", p50, "%.2f", 1); row(s, "p99 latency ms", p99, "%.2f", 1)
        row(s, "proxy CPU, % of its core", cpu, "%.0f", 0)
        row(s, "proxy core idle %", idle, "%.0f", 0)
        row(s, "load generator + backend CPU %", lg, "%.0f", 0)
        row(s, "proxy CPU µs per " per, us, "%.0f", 1)
        row(s, "ceiling at 100% of one core (estimate: 10⁶ / µs)", cap, "%.0f", 1)
      }
    }' "$RUNS"
}

report() {
  echo "### Summary$MODE_NOTE: median of $ROUNDS round(s) per proxy and scenario, ${DURATION}s per run ($(date -u +%Y-%m-%d))"
  echo
  summary_table
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
