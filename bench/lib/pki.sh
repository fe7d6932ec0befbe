# Certificates for bench/run.sh (sourced): the server's root and leaf, and with
# BENCH_MTLS=1 a client CA, a client certificate, a revoked one and the CA's CRL.
# Reads PKI, KEY_TYPE; uses log/die from run.sh.

# A self-signed ECDSA P-256 root: NAME.key and NAME.pem in $PKI.
make_root() { # NAME COMMON-NAME
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$1.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/$1.key" -sha256 -days 2 -subj "/CN=$2" \
    -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' \
    -out "$PKI/$1.pem" 2>/dev/null
}

# The root (always ECDSA P-256: only the leaf's key is signed with in a handshake) and a
# leaf for bench.test + 127.0.0.1 (serverAuth) with a KEY_TYPE key: ecdsa (P-256) or rsa (2048).
# RSA leaves need keyEncipherment only for RSA key exchange, which no suite offered here uses.
make_server_pki() {
  log "making an ECDSA P-256 CA and a $KEY_LABEL leaf in $PKI"
  mkdir -p "$PKI"
  make_root ca 'Portcullis bench CA'
  case $KEY_TYPE in
    ecdsa) openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/leaf.key" 2>/dev/null ;;
    rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/leaf.key" 2>/dev/null ;;
  esac
  openssl req -new -key "$PKI/leaf.key" -subj '/CN=bench.test' -out "$PKI/leaf.csr" 2>/dev/null
  printf '%s\n' 'subjectAltName=DNS:bench.test,IP:127.0.0.1' 'extendedKeyUsage=serverAuth' \
    'keyUsage=critical,digitalSignature' 'basicConstraints=critical,CA:FALSE' >"$PKI/leaf.ext"
  openssl x509 -req -in "$PKI/leaf.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 2 -sha256 -extfile "$PKI/leaf.ext" -out "$PKI/leaf.pem" 2>/dev/null
  # HAProxy wants the certificate and its key in one file
  cat "$PKI/leaf.pem" "$PKI/leaf.key" >"$PKI/leaf-with-key.pem"
}

# Mutual TLS: a separate client CA run as an openssl CA database, a client certificate,
# and the CA's CRL. The CRL lists ~1000 revoked serials (written straight into index.txt,
# as `openssl ca -revoke` would) plus one real certificate revoked with `openssl ca -revoke`,
# which the checks present. Sets CRL_ENTRIES.
make_client_pki() {
  log "making an ECDSA P-256 client CA, a client certificate and a CRL in $PKI/client-ca"
  local cadir="$PKI/client-ca" name
  mkdir -p "$cadir/certs"
  make_root client-ca 'Portcullis bench client CA'
  cat >"$cadir/ca.cnf" <<CNF
[ ca ]
default_ca = client_ca
[ client_ca ]
database = $cadir/index.txt
serial = $cadir/serial
crlnumber = $cadir/crlnumber
new_certs_dir = $cadir/certs
certificate = $PKI/client-ca.pem
private_key = $PKI/client-ca.key
default_md = sha256
default_days = 2
default_crl_days = 2
unique_subject = no
policy = policy_any
x509_extensions = client_cert
crl_extensions = crl_ext
[ policy_any ]
commonName = supplied
[ client_cert ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ crl_ext ]
authorityKeyIdentifier = keyid:always
CNF
  echo 1000 >"$cadir/serial"
  echo 1000 >"$cadir/crlnumber"
  # 1000 revoked entries with random 128-bit serials: status, expiry, revocation date[,reason], serial, file, subject
  openssl rand -hex 16000 | fold -w32 | tr a-f A-F |
    awk -v e="$(date -u -d '+2 days' +%y%m%d%H%M%SZ)" -v r="$(date -u -d '-1 hour' +%y%m%d%H%M%SZ)" \
      '{ printf "R\t%s\t%s,keyCompromise\t%s\tunknown\t/CN=revoked-%d\n", e, r, $1, NR }' >"$cadir/index.txt"
  for name in client revoked; do
    openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
    openssl req -new -key "$PKI/$name.key" -subj "/CN=bench-$name" -out "$PKI/$name.csr" 2>/dev/null
    openssl ca -batch -notext -config "$cadir/ca.cnf" -in "$PKI/$name.csr" -out "$PKI/$name.pem" >"$cadir/ca-$name.log" 2>&1 ||
      die "openssl ca could not issue the $name certificate: $(cat "$cadir/ca-$name.log")"
  done
  openssl ca -config "$cadir/ca.cnf" -revoke "$PKI/revoked.pem" -crl_reason superseded >"$cadir/ca-revoke.log" 2>&1 ||
    die "openssl ca -revoke failed: $(cat "$cadir/ca-revoke.log")"
  openssl ca -config "$cadir/ca.cnf" -gencrl -out "$PKI/client-ca.crl" >"$cadir/ca-gencrl.log" 2>&1 ||
    die "openssl ca -gencrl failed: $(cat "$cadir/ca-gencrl.log")"
  CRL_ENTRIES=$(openssl crl -in "$PKI/client-ca.crl" -noout -text | grep -c 'Serial Number:' || true)
  openssl verify -CAfile "$PKI/client-ca.pem" -crl_check -CRLfile "$PKI/client-ca.crl" -purpose sslclient "$PKI/client.pem" >/dev/null 2>&1 ||
    die "the client certificate does not verify against the client CA and its CRL"
  if openssl verify -CAfile "$PKI/client-ca.pem" -crl_check -CRLfile "$PKI/client-ca.crl" "$PKI/revoked.pem" >/dev/null 2>&1; then
    die "the revoked certificate still verifies against the CRL"
  fi
  log "client CA CRL: $CRL_ENTRIES revoked serials, $(wc -c <"$PKI/client-ca.crl") bytes (PEM)"
}
