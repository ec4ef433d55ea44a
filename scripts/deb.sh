#!/usr/bin/env bash
# scripts/deb.sh BUILD - a Debian package of BUILD/berth: `make install`
# staged with PREFIX=/usr, the units under /lib/systemd/system, the
# defaults as conffiles, and Depends computed from the libraries the binary
# links (dpkg -S), so the package installs on the Debian it was built on.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
version=$("$build/berth" --version | awk '{print $2}')
arch=$(dpkg --print-architecture)
build=$(cd "$build" && pwd)
stage=$build/deb/berth_${version}_$arch
rm -rf "$stage"
make --no-print-directory BUILD="$build" install DESTDIR="$stage" PREFIX=/usr \
	SYSTEMD_UNIT_DIR=/lib/systemd/system SYSCONF_DIR=/etc >/dev/null

# Depends: the package of each library the binary itself names (NEEDED).
depends=$(readelf -d "$build/berth" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | while read -r so; do
	path=$(ldconfig -p | awk -v so="$so" '$1 == so {print $NF; exit}')
	[ -n "$path" ] || continue
	dpkg -S "$(readlink -f "$path")" 2>/dev/null || dpkg -S "$path" 2>/dev/null || true
done | cut -d: -f1 | sort -u | while read -r pkg; do
	v=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null | sed 's/-[^-]*$//')
	echo "$pkg (>= $v)"
done | paste -sd, | sed 's/,/, /g')

mkdir -p "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<CONTROL
Package: berth
Version: $version
Architecture: $arch
Maintainer: berth developers <berth@localhost>
Installed-Size: $size
Depends: $depends
Recommends: runc, iproute2
Suggests: docker.io, etcd-server
Section: admin
Priority: optional
Description: cluster scheduler and container orchestrator
 berth keeps services, batch and cron jobs running on a fleet of
 machines: one binary for the server, the agent, the single-node
 berth up and the client commands.
CONTROL
(cd "$stage" && find etc -type f | sed 's|^|/|') >"$stage/DEBIAN/conffiles"
cat >"$stage/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
	install -d -m 0700 /var/lib/berth /etc/berth
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
	fi
fi
POSTINST
cat >"$stage/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
	systemctl stop berth-agent.service berth-server.service 2>/dev/null || true
fi
PRERM
cat >"$stage/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
	# Task network namespaces an agent kept are bind mounts under its data dir.
	awk '$2 ~ "^/var/lib/berth/" {print $2}' /proc/self/mounts | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done
	rm -rf /var/lib/berth /etc/berth || true
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
POSTRM
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$build/berth_${version}_$arch.deb" >/dev/null
echo "$build/berth_${version}_$arch.deb"
