#!/usr/bin/env bash
# Installs the Debian packages the tests talk to (real TLS peers), only when one
# is missing, so a second run costs nothing. Needs root or sudo for apt-get.
set -euo pipefail

# command -> Debian package
declare -A needed=(
  [openssl]=openssl
  [curl]=curl
  [gnutls-cli]=gnutls-bin
  [pebble]=pebble
  [chromium]=chromium
)

missing=()
for cmd in "${!needed[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${needed[$cmd]}")
done
((${#missing[@]} == 0)) && exit 0

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
