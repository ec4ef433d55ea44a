#!/usr/bin/env bash
# Install the Debian packages that building and testing berth need, when missing.
set -euo pipefail
build_pkgs=(gcc make pkg-config libmicrohttpd-dev libjansson-dev libyaml-dev libsqlite3-dev
	libnl-3-dev libnl-route-3-dev libmnl-dev libnftnl-dev
	libcurl4-openssl-dev libssl-dev libgnutls28-dev zlib1g-dev libmimalloc-dev clang-format)
test_pkgs=(bats groff-base bsdextrautils busybox-static iproute2 nftables procps curl openssl ca-certificates python3 sqlite3 runc skopeo docker-registry etcd-server
	docker.io wrk nginx-light nodejs chromium fonts-dejavu-core)
# The web UI's test (tests/e2e/ui.bats) drives chromium (a font for its
# screenshots) with Playwright from npm. A Node.js from elsewhere (NodeSource)
# brings its own npm, which Debian's would conflict with.
command -v npm >/dev/null || test_pkgs+=(npm)
missing=()
for p in "${build_pkgs[@]}" "${test_pkgs[@]}" ${BERTH_EXTRA_PKGS:-}; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing packages: ${missing[*]} (run as root or install them)" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
