# HAProxy (Debian's 2.6) for bench/run.sh (sourced). Product interface: see proxies.sh.
#
# One thread (nbthread 1) in the foreground (-db), the same suites, order, groups and
# server preference (HAProxy's default; `prefer-client-ciphers` is not set) as nginx.
# X-Forwarded-For (`option forwardfor`) and -Proto upstream, a request id (unique-id)
# upstream and on the answer, HSTS. Backend connections are kept alive and shared
# (`http-reuse always`, as nginx's upstream keepalive pool does). The access log goes
# to stdout, which run.sh sends to a file; HAProxy writes each line as it comes (no
# buffer option for a file). mTLS: `verify required` with the client CA and `crl-file`.
haproxy_config() { # NAME PORT
  local dir=$WORK/$1 mtls=''
  mkdir -p "$dir"
  [[ $MTLS == 1 ]] && mtls=" verify required ca-file $PKI/client-ca.pem crl-file $PKI/client-ca.crl"
  cat >"$dir/haproxy.cfg" <<CONF
global
  nbthread 1
  # as nginx's worker_connections; 2 descriptors per connection must fit under the hard `ulimit -n`
  maxconn 4096
  log stdout format raw local0
  ssl-default-bind-options ssl-min-ver TLSv1.2
  ssl-default-bind-ciphers $TLS12_CIPHERS
  ssl-default-bind-ciphersuites $TLS13_SUITES
  ssl-default-bind-curves X25519:P-256:P-384
  tune.ssl.cachesize 20000

defaults
  mode http
  log global
  # the client certificate's presence and verification result are in every line, for the mTLS check
  log-format "%ci:%cp [%tr] %ft %b %ST %B %{+Q}r %ID c_used=%[ssl_c_used] c_verify=%[ssl_c_verify]"
  option http-keep-alive
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s

frontend bench
  bind 127.0.0.1:$2 ssl crt $PKI/leaf-with-key.pem alpn h2,http/1.1$mtls
  unique-id-format %{+X}o\ %ci:%cp_%fi:%fp_%Ts_%rt:%pid
  unique-id-header X-Request-Id
  option forwardfor
  http-request set-header X-Forwarded-Proto https
  http-response set-header Strict-Transport-Security "max-age=31536000; includeSubDomains"
  http-response set-header X-Request-Id %[unique-id]
  default_backend backend

backend backend
  http-reuse always
  server backend 127.0.0.1:$BACKEND_PORT
CONF
  "$HAPROXY" -c -q -f "$dir/haproxy.cfg" >"$dir/check.log" 2>&1 || die "haproxy -c failed: $(cat "$dir/check.log")"
  CONFIG_FILE[$1]=$dir/haproxy.cfg
  # stdout is the access log; HAProxy's own messages go to stderr, the proxy log
  STDOUT_FILE[$1]=$dir/access.log
}

haproxy_command() { # NAME
  CMD=("$HAPROXY" -db -f "$WORK/$1/haproxy.cfg")
}

haproxy_version() { "$HAPROXY" -v | head -1 | cut -d' ' -f1-3; }
