#!/bin/sh
# make-figures.sh — regenerate every figure of the guide: the data (JSON)
# and the plots (SVG), in one go, from the commands the guide shows.
#
#   sh docs/guide/figures/make-figures.sh [BUILD]     (default build/release)
#
# Each figure is `parbench COMMAND FLAGS` exactly as the guide's chapter
# shows it, plus `--json` (the data, NAME.json), `--markdown` (the same
# tables to read, NAME.md) and `--plot` (gnuplot: NAME.svg, and
# NAME-COMMAND-TABLE.svg for a second table).
# machine.txt records where and when they were measured, and how busy the
# machine was. Run it on a quiet machine: other programs running at the
# same time lower every speedup (each JSON's notes give the "parallel
# capacity": 2.0 on an idle 2-CPU machine).
#
# Needs gnuplot (Debian: gnuplot-nox; `make bench-peers` installs it).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build/release}
parbench=$build/clients/parbench
[ -x "$parbench" ] || { echo "make-figures: no $parbench; build first (make build)" >&2; exit 1; }
command -v gnuplot >/dev/null || { echo "make-figures: needs gnuplot (apt-get install gnuplot-nox)" >&2; exit 1; }

# The guide's commands, one per figure: NAME then the parbench arguments.
figure() {
    name=$1
    shift
    echo "make-figures: parbench $*" >&2
    rm -f "$here/$name".svg "$here/$name"-*.svg
    "$parbench" "$@" --quiet --json --plot "$here/$name.svg" --markdown "$here/$name.md" \
        >"$here/$name.json"
}

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) CPUs"
    echo "kernel: $(uname -sr)"
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$here/machine.txt"

figure threads threads --duration 100
figure sync sync --duration 50
figure shm shm --blocks 64K,1M,16M
figure overhead overhead --durations 0.1,0.25,0.5,1,2,5,10,100 --budget 30
figure scaling scaling --budget 200

# The case studies of chapter 7, as the chapter runs them; their output
# is what the chapter shows.
bin=$build/clients
dir=$(mktemp -d /tmp/pard-figures-XXXXXX)
echo "make-figures: the case studies" >&2
{
    echo "\$ pard-montecarlo --tasks 200 --samples 200000"
    "$bin/pard-montecarlo" --tasks 200 --samples 200000
    echo "\$ pard-crossval --repeats 1"
    "$bin/pard-crossval" --repeats 1
    PARD_SOCKET=$dir/pard.sock
    export PARD_SOCKET
    "$build/daemon/pard" --spawn 2 --worker "$bin/pard-xmlcount --worker" --log-level warn &
    pard_pid=$!
    "$bin/parctl" wait 2 >/dev/null
    echo "\$ pard-xmlcount"
    "$bin/pard-xmlcount" || { kill "$pard_pid"; exit 1; } # 1: the two runs disagree
    "$bin/parctl" shutdown >/dev/null
    wait "$pard_pid" || true
} >"$here/case-studies.txt"
rm -rf "$dir"
# Chapter 7 shows that output: copy it between its markers.
ch7=$here/../07-case-studies.md
awk -v f="$here/case-studies.txt" '
    /^<!-- figures\/case-studies.txt ends/ { skip = 0 }
    !skip { print }
    /^<!-- figures\/case-studies.txt begins/ {
        print "```text"
        while ((getline l < f) > 0) print l
        print "```"
        skip = 1
    }' "$ch7" >"$ch7.new"
mv "$ch7.new" "$ch7"

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$here/machine.txt"
ls "$here"
