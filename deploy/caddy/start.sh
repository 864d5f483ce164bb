#!/bin/sh
# The proxy's entry point: choose how HTTPS is served from the environment, then run Caddy.
#
#   CLASSROOM_HTTPS_CERT and CLASSROOM_HTTPS_KEY (files in /certs) and CLASSROOM_PUBLIC_NAME:
#       the school's own certificate                              own-certificate.Caddyfile
#   CLASSROOM_PUBLIC_NAME only: a certificate Caddy gets itself   public-name.Caddyfile
#   neither: a bare school network, plain HTTP only              plain-http.Caddyfile
set -eu
here=$(dirname "$0")
if [ -n "${CLASSROOM_HTTPS_CERT:-}${CLASSROOM_HTTPS_KEY:-}" ]; then
  if [ -z "${CLASSROOM_HTTPS_CERT:-}" ] || [ -z "${CLASSROOM_HTTPS_KEY:-}" ] || [ -z "${CLASSROOM_PUBLIC_NAME:-}" ]; then
    echo "The school's own certificate needs CLASSROOM_HTTPS_CERT, CLASSROOM_HTTPS_KEY and CLASSROOM_PUBLIC_NAME (the name it is for)." >&2
    exit 64
  fi
  for file in "$CLASSROOM_HTTPS_CERT" "$CLASSROOM_HTTPS_KEY"; do
    if [ ! -r "/certs/$file" ]; then
      echo "/certs/$file cannot be read: put it in CLASSROOM_HTTPS_CERT_DIR (see docs/deploy.md)." >&2
      exit 66
    fi
  done
  mode=own-certificate
elif [ -n "${CLASSROOM_PUBLIC_NAME:-}" ]; then
  mode=public-name
else
  mode=plain-http
  echo "No CLASSROOM_PUBLIC_NAME: plain HTTP for students; the teacher's page opens only at https://localhost on this server (docs/deploy.md)."
fi
echo "The proxy serves: $mode ($here/$mode.Caddyfile)"
exec caddy run --config "$here/$mode.Caddyfile" --adapter caddyfile
