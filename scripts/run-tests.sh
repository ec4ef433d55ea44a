#!/usr/bin/env bash
# Run the unit tests (one binary per module) and the end-to-end tests (bats,
# driving the real binary), then print one closing line:
#   N passed, N failed, N skipped
# Usage: scripts/run-tests.sh BUILD_DIR [unit|e2e|all]
set -u
build=${1:-build}
which=${2:-all}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export BERTH_BIN="$top/$build/berth"
export BERTH_TOOLS="$top/$build/tests"
passed=0 failed=0 skipped=0
failures=()

# The build's rules (layers, formatting) count as one test.
if [ "$which" = all ]; then
	if out=$(scripts/check.sh 2>&1); then
		echo "ok   scripts/check.sh (layers and format)"
		passed=$((passed + 1))
	else
		echo "$out"
		echo "FAIL scripts/check.sh (layers and format)"
		failed=$((failed + 1))
		failures+=(scripts/check.sh)
	fi
fi

if [ "$which" = all ] || [ "$which" = unit ]; then
	for t in "$build"/tests/test_*; do
		[ -x "$t" ] || continue
		out=$("$t" 2>&1)
		echo "$out" | grep -E '^(ok|FAIL|skip) ' || true
		echo "$out" | grep -E '^    ' | head -40
		line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1)
		if [ -z "$line" ]; then
			echo "FAIL $t (crashed before its summary)"
			failed=$((failed + 1))
			failures+=("$t")
			continue
		fi
		read -r p f s <<<"$(echo "$line" | sed -E 's/([0-9]+) passed, ([0-9]+) failed(, ([0-9]+) skipped)?/\1 \2 \4/')"
		passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + ${s:-0}))
		[ "$f" -gt 0 ] && failures+=("$t")
	done
fi

if [ "$which" = all ] || [ "$which" = e2e ]; then
	if ! command -v bats >/dev/null; then
		echo "skip e2e: bats is not installed"
		skipped=$((skipped + 1))
	else
		for f in tests/e2e/*.bats; do
			[ -f "$f" ] || continue
			t0=$SECONDS
			out=$(timeout 900 bats --tap "$f" 2>&1)
			echo "$out"
			# How long each file took: where the suite's time goes.
			echo "# $f: $((SECONDS - t0)) s"
			p=$(echo "$out" | grep -cE '^ok [0-9]+' )
			s=$(echo "$out" | grep -cE '^ok [0-9]+ .*# skip')
			n=$(echo "$out" | grep -cE '^not ok [0-9]+')
			plan=$(echo "$out" | grep -E '^1\.\.[0-9]+' | head -1 | cut -d. -f3)
			ran=$((p + n))
			if [ -n "$plan" ] && [ "$ran" -lt "$plan" ]; then
				echo "not ok: $f stopped after $ran of $plan tests"
				n=$((n + plan - ran))
			fi
			passed=$((passed + p - s)) skipped=$((skipped + s)) failed=$((failed + n))
			[ "$n" -gt 0 ] && failures+=("$f")
		done
	fi
fi

if [ ${#failures[@]} -gt 0 ]; then
	echo "failing: ${failures[*]}"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
