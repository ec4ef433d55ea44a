#!/usr/bin/env bash
# The rules a build checks (make check, run by make test):
#  1. layers: each folder of src/ includes only the folders below it
#       core   <- nothing of berth's
#       store  <- core
#       sched  <- core
#       server <- core, store, sched
#       agent  <- core            (agent/image too)
#       tools  <- core            (load tools such as the agent simulator)
#       cmd    <- everything      (the command line wires the layers)
#  2. format: clang-format (the committed .clang-format) changes no file in
#     src/, tests/, fuzz/ or bench/.
# Prints every violation and exits 1 when there is one.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bad=0

allowed() { # LAYER -> the folders it may include
	case $1 in
	core) echo "core" ;;
	store) echo "core store" ;;
	sched) echo "core sched" ;;
	server) echo "core store sched server" ;;
	agent) echo "core agent" ;;
	tools) echo "core tools" ;;
	cmd) echo "core store sched server agent tools cmd" ;;
	*) echo "" ;;
	esac
}

while IFS= read -r f; do
	layer=${f#src/}
	layer=${layer%%/*}
	ok=$(allowed "$layer")
	[ -n "$ok" ] || { echo "check: $f: folder '$layer' has no layer rule (scripts/check.sh)"; bad=1; continue; }
	while IFS=: read -r line inc; do
		dir=${inc%%/*}
		case " $ok " in
		*" $dir "*) ;;
		*) echo "check: $f:$line: layer '$layer' must not include \"$inc\""; bad=1 ;;
		esac
	done < <(grep -n '^#include "[^"]*/' "$f" | sed -E 's/^([0-9]+):#include "([^"]+)".*/\1:\2/')
done < <(find src -mindepth 2 -name '*.[ch]' | sort)

if command -v clang-format >/dev/null; then
	while IFS= read -r f; do
		if ! clang-format "$f" | cmp -s - "$f"; then
			echo "check: $f: not formatted (make format)"
			bad=1
		fi
	done < <(find src tests fuzz bench -name '*.[ch]' | sort)
else
	echo "check: clang-format is not installed: format not checked (make deps installs it)"
fi

[ $bad = 0 ] && echo "check: layers and format ok"
exit $bad
