#!/usr/bin/env bash
# fuzz.sh - build every fuzz/*.c target with libFuzzer, ASan and UBSan into
# build-fuzz/ and run each for FUZZ_SECONDS (default 20); fail on any crash.
#
# A target names what it links in its header comment:
#     fuzz-sources: src/core/util.c src/core/spec.c
#     fuzz-libs: -ljansson -lyaml
# Its seed corpus is fuzz/corpus/NAME/ (NAME = file name without "fuzz_");
# new inputs go to build-fuzz/corpus/NAME/, so the seeds in git stay small.
# Usage: scripts/fuzz.sh [target...]   e.g. scripts/fuzz.sh fuzz_spec_yaml
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v clang >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ]; then
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq >/dev/null
		apt-get install -y clang libclang-rt-14-dev
	else
		echo "fuzz: clang is missing (apt-get install -y clang libclang-rt-14-dev)" >&2
		exit 1
	fi
fi

seconds=${FUZZ_SECONDS:-20}
out=build-fuzz
mkdir -p "$out"

if [ $# -gt 0 ]; then
	targets=()
	for t in "$@"; do targets+=("fuzz/${t%.c}.c"); done
else
	targets=(fuzz/*.c)
fi

failed=()
for src in "${targets[@]}"; do
	[ -f "$src" ] || { echo "fuzz: no such target $src" >&2; exit 1; }
	name=$(basename "$src" .c)
	corpus_name=${name#fuzz_}
	# The header lines, without a comment close that may end them.
	read -r -a sources <<<"$(sed -n 's/^.*fuzz-sources:\(.*\)$/\1/p' "$src" | head -1 | sed 's|\*/.*||')"
	read -r -a libs <<<"$(sed -n 's/^.*fuzz-libs:\(.*\)$/\1/p' "$src" | head -1 | sed 's|\*/.*||')"
	echo "fuzz: building $name"
	clang -std=gnu11 -g -O1 -fno-omit-frame-pointer \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
		-Wall -Wextra -Wno-unused-parameter -Isrc -D_GNU_SOURCE \
		"$src" "${sources[@]}" -o "$out/$name" "${libs[@]}"
	work="$out/corpus/$corpus_name"
	mkdir -p "$work"
	seeds=()
	[ -d "fuzz/corpus/$corpus_name" ] && seeds=("fuzz/corpus/$corpus_name")
	echo "fuzz: running $name for ${seconds}s"
	if ! ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		"$out/$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-max_len=16384 -print_final_stats=1 -artifact_prefix="$out/$name-" \
		"$work" "${seeds[@]}" >"$out/$name.log" 2>&1; then
		echo "fuzz: $name FAILED; see $out/$name.log and $out/$name-*" >&2
		tail -n 40 "$out/$name.log" >&2
		failed+=("$name")
	else
		grep -E '^stat::number_of_executed_units|^#[0-9]+.*DONE' "$out/$name.log" | tail -2 || true
	fi
done

if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: crashes in: ${failed[*]}" >&2
	exit 1
fi
echo "fuzz: all targets ran ${seconds}s without a crash"
