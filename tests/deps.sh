#!/bin/sh
# Install the Debian packages the build and the test suite need, if any is
# missing.  Runs as root (CI) or through sudo.
PKGS="build-essential python3-dev python3-pytest python3-httpx python3-django
      curl libbearssl-dev mandoc
      python3-starlette python3-fastapi python3-multipart python3-uvloop nginx-light
      python3-websockets python3-sniffio python3-click openssl wrk haproxy slowhttptest valgrind clang
      systemd python3-h2 nghttp2-client python3-hypercorn"
missing=""
for p in $PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq && $SUDO apt-get install -y -qq $missing
