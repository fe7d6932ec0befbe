# Caddy (Debian's 2.6) for bench/run.sh (sourced). Product interface: see proxies.sh.
#
# GOMAXPROCS=1: one thread running Go code, as nginx has one worker (the Go runtime keeps a
# few more threads for system calls and the garbage collector; all are pinned to PROXY_CPU
# and counted). No admin endpoint, no automatic HTTPS, storage, HOME and XDG dirs under the
# work dir, so it touches nothing of the machine's. HTTP/3 is off (`protocols h1 h2`):
# otherwise it opens a QUIC listener and adds an Alt-Svc header to every answer.
#
# What Go's TLS stack does not let one configure: suite order and server preference (Go
# chooses the suite itself since 1.17), TLS 1.3 suites (all three AEADs, always on).
# Caddy's reverse_proxy sends X-Forwarded-For/-Proto/-Host by default and keeps backend
# connections alive. Its access log writes each line as it comes (no buffer option).
# mTLS: Caddy 2.6 has no CRL check, so BENCH_MTLS=1 leaves it out (see run.sh).
caddy_config() { # NAME PORT
  local dir=$WORK/$1
  mkdir -p "$dir/data" "$dir/config"
  # the tab indentation is `caddy fmt`'s, which otherwise warns at every start
  cat >"$dir/Caddyfile" <<CONF
{
	admin off
	auto_https off
	# clients without SNI (s_time, wrk and h2load to 127.0.0.1) get the bench.test certificate
	default_sni bench.test
	storage file_system {
		root $dir/data
	}
	servers {
		protocols h1 h2
	}
}

https://:$2 {
	bind 127.0.0.1
	tls $PKI/leaf.pem $PKI/leaf.key {
		protocols tls1.2 tls1.3
		ciphers $CADDY_TLS12_CIPHERS
		curves x25519 secp256r1 secp384r1
	}
	header Strict-Transport-Security "max-age=31536000; includeSubDomains"
	header X-Request-Id {http.request.uuid}
	log {
		output file $dir/access.log
	}
	reverse_proxy 127.0.0.1:$BACKEND_PORT {
		header_up X-Request-Id {http.request.uuid}
	}
}
CONF
  CONFIG_FILE[$1]=$dir/Caddyfile
}

caddy_command() { # NAME
  local dir=$WORK/$1
  CMD=(env GOMAXPROCS=1 HOME="$dir" XDG_DATA_HOME="$dir/data" XDG_CONFIG_HOME="$dir/config"
    "$CADDY" run --config "$dir/Caddyfile" --adapter caddyfile)
}

caddy_version() { "$CADDY" version; }
