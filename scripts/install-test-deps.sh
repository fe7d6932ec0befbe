#!/usr/bin/env bash
# Installs what the tests need and this machine lacks, so a second run costs
# nothing: the Debian packages the tests talk to (real TLS peers), which needs
# root or sudo for apt-get, and, when the system Node is older than 24, the
# pinned Node 24 that the suite also runs on (scripts/node24.sh, into .cache/).
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package
declare -A needed=(
  [openssl]=openssl
  [curl]=curl
  [gnutls-cli]=gnutls-bin
  [pebble]=pebble
  [chromium]=chromium
  [redis-server]=redis-server
  [redis-sentinel]=redis-sentinel
  [redis-cli]=redis-tools
  [haproxy]=haproxy
  [systemd-analyze]=systemd
)

missing=()
for cmd in "${!needed[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${needed[$cmd]}")
done

if ((${#missing[@]} > 0)); then
  echo "installing Debian packages for the tests: ${missing[*]}" >&2
  if [[ $(id -u) -eq 0 ]]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "need root (or sudo) to run: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Valkey 8 (the tests run the cluster on it as well as on Redis 7) is in bookworm-backports only
if ! command -v valkey-server >/dev/null 2>&1; then
  echo "installing valkey-server from bookworm-backports for the tests" >&2
  if [[ $(id -u) -eq 0 ]]; then sudo=(); else sudo=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  if ! grep -rqs '^deb .*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo 'deb http://deb.debian.org/debian bookworm-backports main' | "${sudo[@]}" tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
  fi
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq -t bookworm-backports valkey-server >/dev/null
fi

if (($(node -p 'process.versions.node.split(".")[0]') < 24)); then
  bash scripts/node24.sh >/dev/null
fi
