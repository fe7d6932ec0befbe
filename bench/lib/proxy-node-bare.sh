# node-bare for bench/run.sh (sourced): bench/node-bare.ts, a bare Node https + HTTP/2
# server forwarding through undici, on the first Node of BENCH_NODES. Not a product: the
# floor under Portcullis's figures (what Node and undici cost before any of its work).
# Product interface: see proxies.sh. mTLS: Node's own client verification with the CRL.
node-bare_config() { # NAME PORT
  local mtls=()
  [[ $MTLS == 1 ]] && mtls=(--client-ca "$PKI/client-ca.pem" --crl "$PKI/client-ca.crl")
  BARE_ARGS=(--port "$2" --cert "$PKI/leaf.pem" --key "$PKI/leaf.key" --upstream "http://127.0.0.1:$BACKEND_PORT" "${mtls[@]}")
  CONFIG_FILE[$1]=$ROOT/bench/node-bare.ts
}

node-bare_command() { # NAME
  CMD=("${NODE_OF[${PCL_NAMES[0]}]}" --import tsx bench/node-bare.ts "${BARE_ARGS[@]}")
}

node-bare_version() { # [NAME]
  local node=${NODE_OF[${PCL_NAMES[0]}]}
  echo "bench/node-bare.ts on Node $("$node" -v) at $node, OpenSSL $("$node" -p process.versions.openssl)"
}
