#!/usr/bin/env bash
# A whole Portcullis cluster on this machine, to try: redis-server, three Portcullis
# instances sharing their state through it (cluster "demo"), and HAProxy from Debian in
# front in TCP mode, with the PROXY protocol, as docs/cluster.md describes.
#
#   bash scripts/cluster-demo.sh              # serves https://localhost:8443/ until Ctrl-C
#   bash scripts/cluster-demo.sh --port 9443  # HAProxy on another port
#   bash scripts/cluster-demo.sh --check      # free ports; start, one request, status --fleet, stop
#
# Needs redis-server, haproxy, curl (Debian: apt-get install redis-server haproxy curl) and
# this repository with its dependencies installed (npm install). Portcullis runs from the
# source through tsx when the repository has it, else from bin/portcullis.js (npm run build).
#
# Everything lives in one temp folder (printed; removed at the end unless PCL_DEMO_KEEP=1):
#   redis/          redis.conf (an ACL user restricted to the cluster's keys and channels)
#   redis-password  the user's password, read by each instance through state.passwordFile
#   pki/            a CA made by `portcullis ca init` and the server certificate for
#                   localhost and 127.0.0.1 that every instance serves (one certificate fleet-wide)
#   nodeN/          instance N: portcullis.yaml, its own dataDir, portcullis.log
#   haproxy.cfg     TCP mode, round robin, send-proxy-v2, health checks
#
# Every process is started here and stopped by its PID on exit, on Ctrl-C and on SIGTERM.
#
# Environment: NODE (the node binary, default `node`), PCL_DEMO_KEEP=1 (keep the folder).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
node=${NODE:-node}
mode=serve
front_port=8443

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
  exit 2
}
while [ $# -gt 0 ]; do
  case $1 in
    --check) mode=check ;;
    --port) front_port=${2:?--port needs a port}; shift ;;
    -h|--help) usage ;;
    *) echo "cluster-demo: unknown argument $1" >&2; usage ;;
  esac
  shift
done

for tool in redis-server redis-cli haproxy curl; do
  command -v "$tool" >/dev/null || { echo "cluster-demo: $tool is missing (Debian: apt-get install redis-server haproxy curl)" >&2; exit 1; }
done

# portcullis: from the source through tsx (always current), else the build
if [ -d "$repo/node_modules/tsx" ]; then
  tsx=$(cd "$repo" && "$node" --input-type=module -e "console.log(import.meta.resolve('tsx'))")
  export TSX_TSCONFIG_PATH="$repo/tsconfig.json"
  pcl=("$node" --import "$tsx" "$repo/src/cli/main.ts")
elif [ -f "$repo/dist/cli/main.js" ]; then
  pcl=("$node" "$repo/bin/portcullis.js")
else
  echo "cluster-demo: run npm install in $repo first" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/pcl-cluster-demo.XXXXXX")
pids=()

stop_all() {
  local status=$?
  trap - EXIT INT TERM
  # HAProxy first, then the instances (they leave the fleet registry as they stop), Redis last
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  if [ "${PCL_DEMO_KEEP:-0}" = 1 ]; then echo "cluster-demo: files kept in $work" >&2; else rm -rf "$work"; fi
  exit "$status"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
  echo "cluster-demo: $*" >&2
  exit 1
}

# ports: Redis and the three instances always free ones; HAProxy's too with --check
read -r -d '' -a ports < <("$node" "$repo/bench/free-ports.js" 5 && printf '\0') || true
redis_port=${ports[0]}
instance_ports=("${ports[1]}" "${ports[2]}" "${ports[3]}")
[ "$mode" = check ] && front_port=${ports[4]}

# Redis: an ACL user that may touch only this cluster's keys and channels (docs/cluster.md)
mkdir -p "$work/redis"
redis_password=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
printf '%s\n' "$redis_password" >"$work/redis-password"
chmod 600 "$work/redis-password"
cat >"$work/redis/redis.conf" <<EOF
bind 127.0.0.1
port $redis_port
dir $work/redis
daemonize no
logfile $work/redis/redis.log
save ""
appendonly yes
maxmemory-policy noeviction
user default off
user portcullis on >$redis_password resetkeys ~pcl:demo:* resetchannels &pcl:demo:* +@all -@dangerous +info
EOF
chmod 600 "$work/redis/redis.conf"
redis-server "$work/redis/redis.conf" &
redis_pid=$!
ready=
for _ in $(seq 100); do
  if REDISCLI_AUTH=$redis_password redis-cli -p "$redis_port" --user portcullis ping 2>/dev/null | grep -q PONG; then ready=1; break; fi
  kill -0 "$redis_pid" 2>/dev/null || fail "redis-server exited: $(tail -5 "$work/redis/redis.log")"
  sleep 0.1
done
[ -n "$ready" ] || fail "redis-server did not answer within 10 s"

# One certificate for the whole fleet, from Portcullis's built-in CA
mkdir -p "$work/pki"
(cd "$work/pki" && "${pcl[@]}" ca init >/dev/null && "${pcl[@]}" ca issue-server --host localhost --host 127.0.0.1 --out "$work/pki" >/dev/null) || fail "could not make the demo certificate"
ca_file=$work/pki/.portcullis/ca/ca.pem

# PROXY protocol: Portcullis believes the header only from HAProxy's address. HAProxy
# connects from 127.0.0.2 (its `source` below) and curl from 127.0.0.1, so the answers show
# which address Portcullis judged a request by.
# >>> PROXY PROTOCOL: used when this Portcullis has listen.proxyProtocol (issue 19, §3). <<<
if "${pcl[@]}" schema | grep -q '"proxyProtocol"'; then
  proxy_listen=$'\n  proxyProtocol: ["127.0.0.2/32"]'
  send_proxy=' send-proxy-v2 check-send-proxy'
  proxy_note='PROXY protocol v2 (the client address reaches Portcullis)'
else
  proxy_listen=''
  send_proxy=''
  proxy_note='WITHOUT the PROXY protocol: this Portcullis has no listen.proxyProtocol yet, so it sees HAProxy (127.0.0.2) as the client'
fi

# Three instances: the same config but for listen.https (each its own dataDir, ./data next to it)
for i in 1 2 3; do
  dir=$work/node$i
  mkdir -p "$dir"
  cat >"$dir/portcullis.yaml" <<EOF
# instance $i of the demo cluster: every instance has this config but for listen.https
listen:
  https: "127.0.0.1:${instance_ports[$((i - 1))]}"$proxy_listen
dataDir: ./data
timeouts: { drain: 2s }
state:
  backend: redis
  redis: "redis://portcullis@127.0.0.1:$redis_port/0"
  passwordFile: ../redis-password
  cluster: demo
sites:
  - hosts: [localhost, 127.0.0.1]
    certificates: [{ cert: ../pki/localhost.pem, key: ../pki/localhost.key }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
EOF
  (cd "$dir" && exec "${pcl[@]}" start --config portcullis.yaml >"$dir/portcullis.log" 2>&1) &
  instance_pids[i]=$!
  pids=("$!" "${pids[@]}")
done
pids=("${pids[@]}" "$redis_pid")
for i in 1 2 3; do
  for _ in $(seq 600); do
    grep -q '"event":"listening"' "$work/node$i/portcullis.log" && continue 2
    kill -0 "${instance_pids[i]}" 2>/dev/null || fail "instance $i exited:"$'\n'"$(tail -5 "$work/node$i/portcullis.log")"
    sleep 0.1
  done
  fail "instance $i did not listen within 60 s"
done

# HAProxy in front: TCP mode (TLS ends at Portcullis), round robin, health checks
cat >"$work/haproxy.cfg" <<EOF
global
    maxconn 1000

defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend https
    bind 127.0.0.1:$front_port
    default_backend portcullis

backend portcullis
    balance roundrobin
    source 127.0.0.2
    default-server inter 2s fall 3 rise 2
    server node1 127.0.0.1:${instance_ports[0]} check$send_proxy
    server node2 127.0.0.1:${instance_ports[1]} check$send_proxy
    server node3 127.0.0.1:${instance_ports[2]} check$send_proxy
EOF
haproxy -q -c -f "$work/haproxy.cfg" >/dev/null || fail "haproxy refused $work/haproxy.cfg"
haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
haproxy_pid=$!
pids=("$haproxy_pid" "${pids[@]}")

url=https://localhost:$front_port/
answer=
for _ in $(seq 100); do
  answer=$(curl -sS --fail --max-time 5 --cacert "$ca_file" "$url" 2>/dev/null) && break
  kill -0 "$haproxy_pid" 2>/dev/null || fail "haproxy exited: $(tail -5 "$work/haproxy.log")"
  answer=
  sleep 0.1
done
[ -n "$answer" ] || fail "no answer through HAProxy at $url within 10 s"

fleet_cmd=$(printf '%q ' "${pcl[@]}" status --fleet --config "$work/node1/portcullis.yaml")

if [ "$mode" = check ]; then
  echo "cluster-demo: answered through HAProxy on 127.0.0.1:$front_port ($proxy_note):"
  echo "$answer"
  fleet_status=0
  "${pcl[@]}" status --fleet --config "$work/node1/portcullis.yaml" || fleet_status=$?
  [ "$fleet_status" = 0 ] || fail "status --fleet exited $fleet_status"
  echo "cluster-demo: pids redis $redis_pid, instances ${instance_pids[1]} ${instance_pids[2]} ${instance_pids[3]}, haproxy $haproxy_pid"
  echo "cluster-demo: check passed"
  exit 0
fi

cat <<EOF

  A Portcullis cluster is running (files in $work):
    redis       127.0.0.1:$redis_port (pid $redis_pid), user portcullis, password in $work/redis-password
    instances   127.0.0.1:${instance_ports[0]}, :${instance_ports[1]}, :${instance_ports[2]} (pids ${instance_pids[1]} ${instance_pids[2]} ${instance_pids[3]}), logs in $work/node*/portcullis.log
    haproxy     127.0.0.1:$front_port (pid $haproxy_pid), TCP mode, $proxy_note

  Try:
    curl --cacert $ca_file $url
        (answered by one of the three in turn: "pid" says which, "client" whom it saw)
    $fleet_cmd
        (the three instances, their config and certificate; exit 4 when one differs)
    edit $work/node2/portcullis.yaml (add a route), then
    $(printf '%q ' "${pcl[@]}" reload --config "$work/node2/portcullis.yaml")
        and status --fleet flags node2

  Ctrl-C stops everything.

EOF
# until Ctrl-C, or until one of them exits on its own
exited=0
wait -n "${pids[@]}" || exited=$?
fail "a process of the demo exited (status $exited); stopping the rest"
