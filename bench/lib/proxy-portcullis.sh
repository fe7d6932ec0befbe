# Portcullis for bench/run.sh (sourced): one instance per Node binary of BENCH_NODES,
# all from the same dist/. Product interface: see proxies.sh.

# Default settings (intermediate profile); each instance needs its own dataDir (it holds
# the control socket). Its own log (stdout) is the proxy log the tables count lines of.
portcullis_config() { # NAME PORT
  local mtls=''
  [[ $MTLS == 1 ]] && mtls="
    clientAuth: { mode: require, ca: [$PKI/client-ca.pem], crl: [$PKI/client-ca.crl] }"
  cat >"$WORK/$1.yaml" <<CONF
listen: { https: "127.0.0.1:$2" }
dataDir: $WORK/$1-data
log: { access: $WORK/$1-access.log }
sites:
  - hosts: [bench.test, 127.0.0.1]
    default: true
    certificates: [{ cert: $PKI/leaf.pem, key: $PKI/leaf.key }]$mtls
    routes: [{ path: /, upstream: "http://127.0.0.1:$BACKEND_PORT" }]
CONF
  CONFIG_FILE[$1]=$WORK/$1.yaml
}

portcullis_command() { # NAME
  CMD=("${NODE_OF[$1]}" bin/portcullis.js start --config "$WORK/$1.yaml")
}

portcullis_version() { # NAME
  echo "$("${NODE_OF[$1]}" -v) at ${NODE_OF[$1]}, OpenSSL $("${NODE_OF[$1]}" -p process.versions.openssl)"
}
