#!/bin/sh
# make demo: the foundation's demonstration — shared-memory ping-pong
# against a pipe, between two real processes.
set -eu
build=${1:-build/release}
echo "== pard demo: round trip between two processes =="
"$build/clients/pard-pingpong" 20000
