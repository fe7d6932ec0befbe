# nginx for bench/run.sh (sourced): the backend, and nginx as a proxy under test.
# Product interface (see proxies.sh): nginx_config NAME PORT, nginx_command NAME,
# nginx_version, and NGINX found by the prerequisites check.

# Common nginx main/events/http preamble: everything under its own prefix,
# nothing under /etc/nginx, /var/lib/nginx or /run.
nginx_preamble() { # PREFIX
  cat <<CONF
worker_processes 1;
pid $1/nginx.pid;
lock_file $1/nginx.lock;
error_log $1/logs/error.log warn;
events { worker_connections 4096; }
http {
  client_body_temp_path $1/tmp/body;
  proxy_temp_path $1/tmp/proxy;
  fastcgi_temp_path $1/tmp/fastcgi;
  uwsgi_temp_path $1/tmp/uwsgi;
  scgi_temp_path $1/tmp/scgi;
  access_log off;
  server_tokens off;
CONF
}

# The backend: `ok\n` on /, and a 1 MiB static file on /1m (the `large` scenario),
# over plain HTTP/1.1 keep-alive without a request limit.
nginx_backend_config() { # PORT
  local prefix=$WORK/backend
  mkdir -p "$prefix/logs" "$prefix/tmp" "$prefix/www"
  head -c 1048576 /dev/urandom >"$prefix/www/1m"
  # nginx's worker runs as nobody: let it through the (mode 700) work dir to the file, and no further
  chmod o+x "$WORK" "$prefix"
  chmod o+rx "$prefix/www"
  chmod o+r "$prefix/www/1m"
  {
    nginx_preamble "$prefix"
    cat <<CONF
  server {
    listen 127.0.0.1:$1;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    location / { default_type text/plain; return 200 "ok\n"; }
    location = /1m { root $prefix/www; default_type application/octet-stream; }
  }
}
CONF
  } >"$prefix/nginx.conf"
  nginx_check "$prefix"
}

nginx_check() { # PREFIX
  "$NGINX" -t -q -p "$1" -c "$1/nginx.conf" -g 'daemon off;' 2>"$1/t.log" ||
    die "nginx -t failed for $1/nginx.conf: $(cat "$1/t.log")"
}

# The nginx proxy does what Portcullis does per request, as far as nginx can:
# same TLS versions, AEAD suites, groups and server preference; X-Forwarded-*
# and X-Request-Id upstream; HSTS and X-Request-Id on the answer; a buffered
# access log. Keep-alive limits are raised so that the keep-alive scenarios never
# measure reconnects (nginx closes a client connection after 1000 requests by
# default; Node does not). `http2` on the listener for the h2 scenario: clients
# that offer no ALPN (wrk, s_time) still get HTTP/1.1.
nginx_config() { # NAME PORT
  local prefix=$WORK/$1 mtls_http='' mtls_server='' mtls_location=''
  mkdir -p "$prefix/logs" "$prefix/tmp"
  if [[ $MTLS == 1 ]]; then
    # nginx's default ssl_verify_depth (1) is enough: the client CA signs the client certificate itself.
    mtls_http="
  # mTLS check only (?mtlslog=1): did the client present its certificate, and did it verify?
  log_format mtls '\$ssl_protocol \$ssl_session_reused \$ssl_client_verify \$ssl_client_serial \$request_uri';"
    mtls_server="
    ssl_verify_client on;
    ssl_client_certificate $PKI/client-ca.pem;
    ssl_crl $PKI/client-ca.crl;"
    mtls_location="
      access_log $prefix/logs/mtls.log mtls if=\$arg_mtlslog;"
  fi
  {
    nginx_preamble "$prefix"
    cat <<CONF
  # The session log is only written for the resumption check (?sessionlog=1), not the measured runs.
  log_format tls '\$ssl_protocol \$ssl_cipher \$ssl_session_reused';$mtls_http
  upstream backend {
    server 127.0.0.1:$BACKEND_PORT;
    keepalive 32;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:$2 ssl http2;
    server_name bench.test 127.0.0.1;
    ssl_certificate $PKI/leaf.pem;
    ssl_certificate_key $PKI/leaf.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers $TLS12_CIPHERS;
    ssl_conf_command Ciphersuites $TLS13_SUITES;
    ssl_prefer_server_ciphers on;
    ssl_ecdh_curve X25519:prime256v1:secp384r1;
    ssl_session_cache shared:SSL:10m;$mtls_server
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    location / {
      access_log $prefix/logs/session.log tls if=\$arg_sessionlog;$mtls_location
      # every proxy logs every request to a file, buffered where it can (Portcullis: one JSON line per request)
      access_log $prefix/logs/access.log combined buffer=64k flush=1s;
      proxy_pass http://backend;
      proxy_http_version 1.1;
      # stream the 1 MiB answers through the memory buffers as the other proxies do,
      # instead of spilling them to a temporary file
      proxy_max_temp_file_size 0;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto https;
      proxy_set_header X-Forwarded-Host \$http_host;
      proxy_set_header X-Request-Id \$request_id;
      add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;
      add_header X-Request-Id \$request_id always;
    }
  }
}
CONF
  } >"$prefix/nginx.conf"
  nginx_check "$prefix"
  CONFIG_FILE[$1]=$prefix/nginx.conf
  PROXY_LOG[$1]=$prefix/logs/error.log
}

nginx_command() { # NAME
  CMD=("$NGINX" -p "$WORK/$1" -c "$WORK/$1/nginx.conf" -g 'daemon off;')
}

nginx_version() { "$NGINX" -v 2>&1 | sed 's/^nginx version: //'; }
