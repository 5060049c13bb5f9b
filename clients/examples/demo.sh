#!/bin/sh
# make demo: start pard with its defaults and two supervised workers, run
# the XML case study on real files of this machine (serial, then in
# parallel through pard), then stop pard cleanly. Then the shared-memory
# ping-pong against a pipe.
set -eu
build=${1:-build/release}
bin=$build/clients
dir=$(mktemp -d /tmp/pard-demo-XXXXXX)
export PARD_SOCKET="$dir/pard.sock"
pard_pid=
cleanup() {
    if [ -n "$pard_pid" ] && kill -0 "$pard_pid" 2>/dev/null; then
        kill "$pard_pid"; wait "$pard_pid" || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

echo "== starting pard with 2 workers (pard --spawn 2 --worker 'pard-xmlcount --worker') =="
"$build/daemon/pard" --spawn 2 --worker "$bin/pard-xmlcount --worker" --log-level warn &
pard_pid=$!
"$bin/parctl" wait 2 --timeout 20
"$bin/parctl" status
echo
echo "== case study: count elements and attributes of every XML file =="
"$bin/pard-xmlcount"
echo
echo "== stopping pard =="
"$bin/parctl" shutdown
wait "$pard_pid"
pard_pid=
echo "pard stopped cleanly"
echo
echo "== round trip between two processes: pard shared memory against a pipe =="
"$bin/pard-pingpong" 20000
