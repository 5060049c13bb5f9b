#!/bin/sh
# docs_commands.sh — every command the docs show runs as shown.
#
# The convention (docs/CONTRIBUTING.md): in README.md, docs/*.md and
# docs/guide/*.md, every fenced block opened with ```sh is run; output
# goes in ```text blocks, code in ```c / ```cmake / ```ini, and none of
# those is run. A ```sh block that must not run here (it installs into
# the system, needs a systemd session, or takes minutes) is preceded by
# the line
#
#     <!-- not run: WHY -->
#
# and is listed, with its reason, in this script's output.
#
# Each document is one shell session (`sh -e -x`, so the first command
# that fails stops it and fails the test), its ```sh blocks in order, in a
# scratch directory laid out like the source tree:
#   - every top-level entry of the source is a symlink to it, except docs/,
#     which is a copy (the tutorial builds in a copy of docs/tutorial);
#   - build/release is a symlink to the build tree under test, so the
#     commands that name build/release/clients/... run its programs;
#   - PATH starts with the build tree's clients/ and daemon/ (pard, parctl,
#     parbench, the examples), PARD_SOCKET is a fresh socket in the scratch
#     directory (no daemon is started for the docs: a document that needs
#     one shows how it starts it);
#   - the build tree is installed into a scratch prefix, and
#     PKG_CONFIG_PATH, LD_LIBRARY_PATH and CMAKE_PREFIX_PATH point at it,
#     as the tutorial's "Without root" section tells a reader to do.
# Whatever a document leaves running (its process group) is killed when it
# ends. A document has DOC_TIMEOUT seconds (default 120).
#
# Run by ctest in the plain build only (tests/docs.cmake), which sets
# PARD_BUILD_DIR, PARD_SOURCE_DIR and PARD_CMAKE. Also by hand:
#   PARD_BUILD_DIR=build/dev PARD_SOURCE_DIR=. sh tests/docs_commands.sh [DOC.md...]
# Exit status: 0 pass, 1 fail, 77 skipped (a tool is missing).
set -eu

build=$(cd "${PARD_BUILD_DIR:?}" && pwd)
src=$(cd "${PARD_SOURCE_DIR:?}" && pwd)
cmake=${PARD_CMAKE:-cmake}
limit=${DOC_TIMEOUT:-120}

for tool in "$cmake" cc pkg-config setsid; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "SKIP: $tool is not installed"
        exit 77
    }
done

work=$(mktemp -d /tmp/pard-docs-XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM

# The scratch source tree.
mkdir "$work/src" "$work/src/build"
for e in "$src"/* "$src"/.[!.]*; do
    [ -e "$e" ] || continue
    name=$(basename "$e")
    case $name in
    build | .git) ;;
    docs) cp -R "$e" "$work/src/docs" ;;
    *) ln -s "$e" "$work/src/$name" ;;
    esac
done
ln -s "$build" "$work/src/build/release"

# The scratch installation.
prefix=$work/prefix
"$cmake" --install "$build" --prefix "$prefix" >"$work/install.log" 2>&1 || {
    cat "$work/install.log"
    echo "FAIL: cmake --install $build --prefix $prefix" >&2
    exit 1
}
pc=$(find "$prefix" -name pard.pc | head -1)
[ -n "$pc" ] || {
    echo "FAIL: the installation has no pard.pc" >&2
    exit 1
}
libdir=$(dirname "$(dirname "$pc")")

# extract DOC: the document's ```sh blocks as a shell script on stdout;
# each not-run block as "# NOT RUN file:line: reason" on stderr.
extract() {
    awk -v doc="$1" '
        function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
        {
            line = $0
            t = trim(line)
        }
        inblock {
            if (t ~ /^```/) {
                inblock = 0
                next
            }
            if (!skip) {
                l = line
                if (indent > 0) l = substr(l, indent + 1)
                print l
            }
            next
        }
        t ~ /^```sh[ \t]*$/ {
            inblock = 1
            indent = index(line, "`") - 1
            skip = (lastnote != "")
            if (skip)
                printf "# NOT RUN %s:%d: %s\n", doc, NR, lastnote > "/dev/stderr"
            else
                printf "\n# --- %s:%d\n", doc, NR
            lastnote = ""
            next
        }
        t ~ /^<!-- not run:/ {
            lastnote = t
            sub(/^<!-- not run:[ \t]*/, "", lastnote)
            sub(/[ \t]*-->$/, "", lastnote)
            if (lastnote == "") lastnote = "(no reason given)"
            next
        }
        t != "" { lastnote = "" }
    ' "$2"
}

if [ $# -gt 0 ]; then
    docs=$*
else
    docs=$(cd "$src" && ls README.md docs/*.md docs/guide/*.md 2>/dev/null) || true
fi

failed=0
ran=0
for doc in $docs; do
    script=$work/$(echo "$doc" | tr / _).sh
    {
        echo "cd '$work/src'"
        extract "$doc" "$src/$doc" 2>"$work/notrun"
    } >"$script"
    sed 's/^/docs: /' "$work/notrun"
    grep -q '^# --- ' "$script" || continue
    n=$(grep -c '^# --- ' "$script")
    rm -f "$work/pard.sock"
    start=$(date +%s)
    # A session of its own, so that whatever it leaves running goes with it.
    env PATH="$build/clients:$build/daemon:$PATH" PARD_SOCKET="$work/pard.sock" \
        PKG_CONFIG_PATH="$libdir/pkgconfig" LD_LIBRARY_PATH="$libdir" \
        CMAKE_PREFIX_PATH="$prefix" \
        setsid sh -e -x "$script" >"$work/log" 2>&1 </dev/null &
    pid=$!
    (
        sleep "$limit" &
        s=$!
        trap 'kill $s 2>/dev/null; exit 0' TERM
        wait $s
        echo "docs: $doc: still running after ${limit} s" >>"$work/log"
        kill -s KILL -- "-$pid" 2>/dev/null
    ) >/dev/null 2>&1 &
    dog=$!
    rc=0
    wait "$pid" || rc=$?
    kill "$dog" 2>/dev/null || true
    wait "$dog" 2>/dev/null || true
    kill -s TERM -- "-$pid" 2>/dev/null || true # what the document left running
    ran=$((ran + n))
    if [ "$rc" -ne 0 ]; then
        echo "docs: FAIL $doc (exit status $rc); its session:" >&2
        sed 's/^/    /' "$work/log" >&2
        failed=1
    else
        echo "docs: ok $doc ($n blocks, $(($(date +%s) - start)) s)"
    fi
done
echo "docs: $ran blocks run"
exit $failed
