#!/usr/bin/env bash
# Start a single-node cluster in the foreground with the example job running.
# Ctrl-C stops it (state stays in ./berth-data; run again to bring it back).
set -euo pipefail
berth=${1:-build/berth}
data=${BERTH_DATA:-berth-data}
addr=${BERTH_LISTEN:-127.0.0.1:7070}
# berth up writes the client's configuration (its address, CA and admin
# token) to ~/.config/berth/config.json: the CLI needs nothing else.
unset BERTH_ADDR BERTH_TOKEN BERTH_CACERT BERTH_TOKEN_FILE
"$berth" up --data-dir "$data" --addr "$addr" &
up=$!
trap 'kill -TERM $up 2>/dev/null || true' INT TERM
for _ in $(seq 1 100); do
	"$berth" node list --json 2>/dev/null | grep -q ACTIVE && break
	sleep 0.1
done
"$berth" job run examples/hello.yaml
"$berth" job status demo/devel/hello
cat <<TXT

berth is running at https://$addr with the example job demo/devel/hello.
In another terminal (the CLI reads ~/.config/berth/config.json, which
berth up wrote; the credentials are in $data/client/):
  $berth job list
  $berth task logs demo/devel/hello/0 -f
  $berth job run examples/batch.yaml
Ctrl-C stops the cluster.
TXT
wait $up
