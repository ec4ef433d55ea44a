#!/usr/bin/env bats
# The oci driver: images from OCI layouts and from a registry, run by runc.
# The test image is built here, by hand, from Debian's busybox-static: one
# gzip layer (busybox, its applet links, a marker file, passwd/group) and
# an optional second layer that deletes a file with a whiteout.

load helpers

# make_layout DIR TAG [memhog]: an OCI image layout with one image tagged TAG.
make_layout() {
	local dir=$1 tag=$2 with_hog=${3:-} w
	w=$(mktemp -d /tmp/berth-img.XXXXXX)
	mkdir -p "$w/rootfs/bin" "$w/rootfs/etc" "$w/rootfs/tmp" "$w/rootfs/home/app" \
		"$w/rootfs/proc" "$w/rootfs/sys" "$w/rootfs/dev" "$w/rootfs/gone"
	cp /bin/busybox "$w/rootfs/bin/busybox"
	for a in $(/bin/busybox --list); do
		[ "$a" = busybox ] || ln -s busybox "$w/rootfs/bin/$a"
	done
	echo "berth test image $tag" >"$w/rootfs/etc/os-release-of-image-marker"
	echo "this file is deleted by layer 2" >"$w/rootfs/gone/file"
	printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
		>"$w/rootfs/etc/passwd"
	printf 'root:x:0:\napp:x:1234:\nextra:x:4321:app\nnogroup:x:65534:\n' >"$w/rootfs/etc/group"
	chmod 1777 "$w/rootfs/tmp"
	if [ -n "$with_hog" ]; then cp "$BERTH_TOOLS/memhog" "$w/rootfs/bin/memhog"; fi
	mkdir -p "$dir/blobs/sha256"
	# layer 1: the root filesystem
	tar -C "$w/rootfs" --numeric-owner --owner=0 --group=0 -cf "$w/l1.tar" .
	# layer 2: a whiteout for /gone/file and a new file
	mkdir -p "$w/l2/gone" "$w/l2/etc"
	: >"$w/l2/gone/.wh.file"
	echo layer2 >"$w/l2/etc/layer2"
	tar -C "$w/l2" --numeric-owner --owner=0 --group=0 -cf "$w/l2.tar" .
	local layers="" diffids="" n
	for n in 1 2; do
		local did dg size
		did=$(sha256sum "$w/l$n.tar" | cut -d' ' -f1)
		gzip -n -c "$w/l$n.tar" >"$w/l$n.tgz"
		dg=$(sha256sum "$w/l$n.tgz" | cut -d' ' -f1)
		size=$(stat -c %s "$w/l$n.tgz")
		cp "$w/l$n.tgz" "$dir/blobs/sha256/$dg"
		layers="$layers${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$dg\",\"size\":$size}"
		diffids="$diffids${diffids:+,}\"sha256:$did\""
	done
	printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin","IMAGE_VAR=from-image"],"Cmd":["/bin/sh","-c","echo default command"],"WorkingDir":"/home/app"},"rootfs":{"type":"layers","diff_ids":[%s]}}' \
		"$diffids" >"$w/config.json"
	local cdg csize
	cdg=$(sha256sum "$w/config.json" | cut -d' ' -f1)
	csize=$(stat -c %s "$w/config.json")
	cp "$w/config.json" "$dir/blobs/sha256/$cdg"
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
		"$cdg" "$csize" "$layers" >"$w/manifest.json"
	local mdg msize
	mdg=$(sha256sum "$w/manifest.json" | cut -d' ' -f1)
	msize=$(stat -c %s "$w/manifest.json")
	cp "$w/manifest.json" "$dir/blobs/sha256/$mdg"
	echo '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
	printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
		"$mdg" "$msize" "$tag" >"$dir/index.json"
	echo "sha256:$mdg" >"$dir/.manifest-digest"
	rm -rf "$w"
}

need_runc() {
	command -v "${BERTH_OCI_RUNTIME:-runc}" >/dev/null || skip "runc is not installed"
}

