#!/bin/sh
# bench/peers/run.sh [BUILD_DIR] [peers.py options] — pard against its peers
# (Python's multiprocessing and concurrent.futures, joblib, GNU parallel,
# ZeroMQ), every ratio measured in this one run. `make bench-peers` installs
# the peers (PEER_DEPS), builds pard and runs this.
#
# Each peer that is missing is skipped with a message saying what to
# install; pard's own figures come from parbench in the same run.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build/release}
[ $# -gt 0 ] && shift
parbench=$build/clients/parbench
if [ ! -x "$parbench" ]; then
    echo "bench-peers: $parbench is not built (run make build, or pass the build directory)" >&2
    exit 1
fi
out=$build/bench-peers
mkdir -p "$out"

zmq=""
if pkg-config --exists libzmq 2>/dev/null; then
    if ${CC:-cc} -O2 -o "$out/zmq_rtt" "$here/zmq_rtt.c" $(pkg-config --cflags --libs libzmq); then
        zmq=$out/zmq_rtt
    else
        echo "bench-peers: ZeroMQ skipped: $here/zmq_rtt.c did not build" >&2
    fi
else
    echo "bench-peers: ZeroMQ skipped: libzmq is not installed (Debian: libzmq3-dev)" >&2
fi

# Debian's python3, not the first one on the PATH: that may be a pyenv build
# without Debian's python3-joblib.
py=/usr/bin/python3
if [ ! -x "$py" ]; then
    echo "bench-peers: $py is missing (Debian: python3): the Python peers are skipped;" >&2
    echo "bench-peers: pard's own figures:" >&2
    "$parbench" overhead --noop-only --workers 2
    [ -n "$zmq" ] && "$zmq" 20000 8
    exit 0
fi
exec "$py" "$here/peers.py" --parbench "$parbench" --zmq "$zmq" --out "$out" "$@"
