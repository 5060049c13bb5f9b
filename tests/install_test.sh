#!/bin/sh
# install_test.sh — pard as a user gets it: `cmake --install` into a
# scratch prefix, then, from a scratch directory that sees nothing of the
# source tree but the tutorial's files,
#
#   1. the files are where they should be: programs, headers, libpard.so
#      (with its SONAME and only pard_* exported) and libpard.a, pard.pc,
#      the CMake package, the man pages, the systemd user unit;
#   2. the tutorial (docs/tutorial) builds with pkg-config (shared, and
#      fully static with --static) and with find_package(pard);
#   3. those programs run against the installed pard on a private socket
#      (`pard --spawn 2 --worker .../worker`, plus the CMake-built worker)
#      and print the right counts; parctl maps and reports from the prefix;
#   4. every man page renders with `man -l` and `groff -ww -z` without a
#      warning, and documents every option (and command) that the
#      program's --help lists, and every function pard.h declares;
#   5. the documented uninstall, `xargs rm < install_manifest.txt`,
#      leaves no file behind.
#
# Run by ctest (tests/install.cmake), which sets the environment:
#   PARD_BUILD_DIR PARD_SOURCE_DIR PARD_CMAKE CC PARD_SANITIZE PARD_VERSION
#   PARD_BINDIR PARD_SBINDIR PARD_LIBDIR PARD_INCLUDEDIR PARD_MANDIR
# Exit status: 0 pass, 1 fail, 77 skipped (a tool is missing).
#
# Sanitizer builds: the installed library and programs are instrumented,
# so the tutorial is compiled with the same -fsanitize flags (a plain
# program cannot load an ASan-instrumented libpard.so first); the fully
# static link is skipped there, since sanitizer runtimes do not link
# statically.
set -eu

build=${PARD_BUILD_DIR:?}
src=${PARD_SOURCE_DIR:?}
cmake=${PARD_CMAKE:-cmake}
cc=${CC:-cc}
san=${PARD_SANITIZE:-}
version=${PARD_VERSION:?}
bindir=${PARD_BINDIR:-bin}
sbindir=${PARD_SBINDIR:-sbin}
libdir=${PARD_LIBDIR:-lib}
includedir=${PARD_INCLUDEDIR:-include}
mandir=${PARD_MANDIR:-share/man}

skip() {
    echo "SKIP: $*"
    exit 77
}
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
step() { echo "== $*"; }

for tool in "$cmake" "$cc" pkg-config man groff readelf nm; do
    command -v "$tool" >/dev/null 2>&1 ||
        skip "$tool is not installed (Debian: make deps installs pkg-config, man-db, groff-base, binutils)"
done

for d in "$bindir" "$sbindir" "$libdir" "$includedir" "$mandir"; do
    case $d in
    /*) skip "an install directory is absolute ($d): it would not go under a scratch prefix" ;;
    esac
done

tmp=$(mktemp -d /tmp/pard-install.XXXXXX)
prefix=$tmp/prefix
sock=$tmp/pard.sock
manifest=$build/install_manifest.txt
pard_pid=
worker_pid=

# cmake --install writes install_manifest.txt into the build directory:
# keep the one of a real install there, if any, and put it back after.
if [ -f "$manifest" ]; then
    cp "$manifest" "$tmp/manifest.saved"
fi
cleanup() {
    for pid in $worker_pid $pard_pid; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ -f "$tmp/manifest.saved" ]; then
        cp "$tmp/manifest.saved" "$manifest"
    else
        rm -f "$manifest"
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

sanflags=
if [ -n "$san" ]; then
    sanflags="-fsanitize=$san -fno-omit-frame-pointer"
fi
cflags="-O2 -Wall -Wextra -Werror $sanflags"

# ---------------------------------------------------------------------
step "cmake --install $build --prefix $prefix"
"$cmake" --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 || {
    cat "$tmp/install.log"
    fail "cmake --install failed"
}
[ -f "$manifest" ] || fail "cmake --install wrote no $manifest"
cp "$manifest" "$tmp/manifest"

step "installed files"
major=${version%%.*}
minor=${version#*.}
minor=${minor%%.*}
soname=libpard.so.$major.$minor
for f in \
    "$sbindir/pard" \
    "$bindir/parctl" "$bindir/parbench" "$bindir/pard-example-worker" "$bindir/pard-xmlcount" \
    "$bindir/pard-montecarlo" "$bindir/pard-crossval" "$bindir/pard-pingpong" \
    "$bindir/pard-ringbench" "$bindir/pard-spinner" \
    "$includedir/pard/ipc.h" "$includedir/pard/proto.h" "$includedir/pard/job.h" \
    "$includedir/pard/pard.h" \
    "$libdir/libpard.so" "$libdir/$soname" "$libdir/libpard.so.$version" "$libdir/libpard.a" \
    "$libdir/pkgconfig/pard.pc" \
    "$libdir/cmake/pard/pardConfig.cmake" "$libdir/cmake/pard/pardConfigVersion.cmake" \
    "$libdir/cmake/pard/pardTargets.cmake" \
    "$mandir/man1/parctl.1" "$mandir/man1/parbench.1" "$mandir/man3/libpard.3" \
    "$mandir/man3/pard_map.3" "$mandir/man8/pard.8"; do
    [ -e "$prefix/$f" ] || fail "$f is not installed under $prefix"
done
while read -r f; do
    case $f in
    "$prefix"/*) ;;
    *) fail "$f was installed outside the prefix $prefix" ;;
    esac
done <"$tmp/manifest"
readelf -d "$prefix/$libdir/libpard.so" | grep -q "SONAME.*\[$soname\]" ||
    fail "libpard.so has no SONAME $soname"
# Exported symbols, without their version (pard_map@@PARD_0.2).
nm -D --defined-only "$prefix/$libdir/libpard.so" | awk '$2 != "A" {sub(/@.*/, "", $3); print $3}' \
    >"$tmp/symbols"
grep -qx pard_map "$tmp/symbols" || fail "libpard.so does not export pard_map"
if grep -v '^pard_[a-z]' "$tmp/symbols" >"$tmp/extra-symbols"; then
    cat "$tmp/extra-symbols"
    fail "libpard.so exports symbols beyond the pard_* API"
fi
unit=$(grep '/pard\.service$' "$tmp/manifest") || fail "pard.service is not installed"
grep -qx "ExecStart=$prefix/$sbindir/pard --socket %t/pard.sock" "$unit" ||
    fail "$unit does not start $prefix/$sbindir/pard on %t/pard.sock"
if command -v systemd-analyze >/dev/null 2>&1; then
    systemd-analyze verify --man=no "$unit" || fail "systemd-analyze verify $unit"
else
    echo "(systemd-analyze is not installed: pard.service not verified)"
fi

# ---------------------------------------------------------------------
step "the tutorial with pkg-config"
export PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig"
[ "$(pkg-config --modversion pard)" = "$version" ] || fail "pkg-config finds no pard $version"
pc=$tmp/pkg-config
mkdir "$pc"
cp "$src/docs/tutorial/worker.c" "$src/docs/tutorial/submit.c" "$src/docs/tutorial/isprime.h" "$pc/"
(
    cd "$pc"
    # shellcheck disable=SC2046,SC2086 # word splitting is the point
    $cc $cflags -o worker worker.c $(pkg-config --cflags --libs pard)
    # shellcheck disable=SC2046,SC2086
    $cc $cflags -o submit submit.c $(pkg-config --cflags --libs pard)
    if [ -z "$san" ]; then
        # shellcheck disable=SC2046,SC2086
        $cc $cflags -static -o submit-static submit.c $(pkg-config --cflags --static --libs pard)
    fi
) || fail "the tutorial does not build with pkg-config"
readelf -d "$pc/submit" | grep -q "NEEDED.*\[$soname\]" || fail "submit does not load $soname"
if [ -z "$san" ]; then
    readelf -d "$pc/submit-static" 2>&1 | grep -q 'no dynamic section' ||
        fail "submit-static (pkg-config --static, cc -static) is not statically linked"
else
    echo "(sanitizer build: no fully static link)"
fi

step "the tutorial with find_package(pard)"
cm=$tmp/cmake
mkdir "$cm"
cp "$src/docs/tutorial/CMakeLists.txt" "$src/docs/tutorial/worker.c" \
    "$src/docs/tutorial/submit.c" "$src/docs/tutorial/isprime.h" "$cm/"
"$cmake" -S "$cm" -B "$cm/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_C_FLAGS="$cflags" -DCMAKE_EXE_LINKER_FLAGS="$sanflags" \
    >"$tmp/cmake.log" 2>&1 || {
    cat "$tmp/cmake.log"
    fail "the tutorial does not configure with find_package(pard)"
}
grep -qx "pard_DIR:PATH=$prefix/$libdir/cmake/pard" "$cm/build/CMakeCache.txt" ||
    fail "find_package(pard) did not find the scratch prefix's pard"
"$cmake" --build "$cm/build" >"$tmp/build.log" 2>&1 || {
    cat "$tmp/build.log"
    fail "the tutorial does not build with find_package(pard)"
}
readelf -d "$cm/build/submit" | grep -q "NEEDED.*\[$soname\]" ||
    fail "CMake's submit does not load $soname (pard::pard)"
if readelf -d "$cm/build/submit-static" | grep -q "NEEDED.*libpard"; then
    fail "CMake's submit-static loads libpard.so (pard::pard_static)"
fi

# ---------------------------------------------------------------------
step "run against the installed pard"
# The pkg-config programs find libpard.so here (CMake's carry an rpath);
# pard passes its environment on to the workers it spawns.
export LD_LIBRARY_PATH="$prefix/$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
parctl="$prefix/$bindir/parctl"
"$prefix/$sbindir/pard" --socket "$sock" --spawn 2 --worker "$pc/worker" --log-level warn &
pard_pid=$!
"$parctl" --socket "$sock" wait 2 --timeout 60 >/dev/null || fail "pard's 2 workers did not register"
"$cm/build/worker" --socket "$sock" &
worker_pid=$!
"$parctl" --socket "$sock" wait 3 --timeout 60 >/dev/null ||
    fail "the CMake-built worker did not register"

expect() { # expect WHAT WANT GOT
    [ "$3" = "$2" ] || fail "$1: wanted '$2', got '$3'"
    echo "ok: $1: $3"
}
want="1229 primes in [1, 10001)"
expect "pkg-config submit" "$want" "$("$pc/submit" --socket "$sock" 1 10000 2>/dev/null)"
expect "CMake submit" "$want" "$("$cm/build/submit" --socket "$sock" 1 10000 2>/dev/null)"
expect "CMake submit-static" "$want" "$("$cm/build/submit-static" --socket "$sock" 1 10000 2>/dev/null)"
if [ -z "$san" ]; then
    expect "pkg-config submit-static" "$want" "$("$pc/submit-static" --socket "$sock" 1 10000 2>/dev/null)"
fi
# Bigger numbers, so that every worker gets batches: the same count as
# the serial loop.
serial=$("$pc/submit" --serial 1000000000 20000 2>/dev/null)
expect "pard against serial" "$serial" "$("$cm/build/submit" --socket "$sock" 1000000000 20000 2>/dev/null)"

# parctl from the prefix, against the tutorial's worker.
status=0
printf '2\n9\n97\nx\n' | "$parctl" --socket "$sock" map isprime >"$tmp/map.out" 2>"$tmp/map.err" ||
    status=$?
expect "parctl map isprime (status)" 1 "$status"
expect "parctl map isprime (outputs)" "1 0 1" "$(head -n 3 "$tmp/map.out" | tr '\n' ' ' | sed 's/ $//')"
grep -q "task 3: isprime: 'x' is not a number" "$tmp/map.err" ||
    fail "parctl map did not report the failed task: $(cat "$tmp/map.err")"
"$parctl" --socket "$sock" stats >"$tmp/stats"
grep -Eq '^workers +3$' "$tmp/stats" || fail "parctl stats: $(cat "$tmp/stats")"

"$parctl" --socket "$sock" shutdown >/dev/null
status=0
wait "$pard_pid" || status=$?
pard_pid=
expect "pard's exit status after shutdown" 0 "$status"
status=0
wait "$worker_pid" || status=$?
worker_pid=
expect "the CMake worker's exit status after shutdown" 0 "$status"

# ---------------------------------------------------------------------
step "man pages"
man_dir=$prefix/$mandir
render() { # plain text, wide, unhyphenated: for grepping
    groff -man -Tascii -rLL=200n -rHY=0 -P-cbu "$1" 2>/dev/null
}
for page in "$man_dir"/man1/*.1 "$man_dir"/man3/*.3 "$man_dir"/man8/*.8; do
    name=${page#"$man_dir"/}
    if head -n 1 "$page" | grep -q '^\.so '; then
        # A stub (pard_map.3): it must lead to a page that renders.
        out=$(cd "$man_dir" && groff -man -ww -z "$name" 2>&1) ||
            fail "$name: groff failed: $out"
        [ -z "$out" ] || fail "$name: groff warns: $out"
        continue
    fi
    out=$(man -l "$page" 2>&1 >/dev/null) || fail "man -l $name failed: $out"
    [ -z "$out" ] || fail "man -l $name warns: $out"
    out=$(groff -man -ww -z "$page" 2>&1) || fail "$name: groff failed: $out"
    [ -z "$out" ] || fail "$name: groff -ww warns: $out"
    echo "ok: $name renders without warnings"
done

# Every option and command of --help is in the program's page.
documents() { # documents PAGE PROGRAM
    help=$("$2" --help 2>&1) || true
    text=$(render "$1")
    for word in $(printf '%s\n' "$help" | grep -oE -- '--[a-z][a-z-]*' | sort -u) \
        $(printf '%s\n' "$help" |
            awk '/^Commands:/ {c = 1; next} c && /^$/ {exit} c && /^  [a-z]/ {print $1}'); do
        printf '%s\n' "$text" | grep -qE -- "(^|[^a-z-])$word([^a-z-]|\$)" ||
            fail "$(basename "$1") does not document $word (from $(basename "$2") --help)"
    done
    echo "ok: $(basename "$1") documents every option of $(basename "$2") --help"
}
documents "$man_dir/man8/pard.8" "$prefix/$sbindir/pard"
documents "$man_dir/man1/parctl.1" "$parctl"
documents "$man_dir/man1/parbench.1" "$prefix/$bindir/parbench"

# Every function pard.h declares is in libpard(3) and has its stub.
text=$(render "$man_dir/man3/libpard.3")
grep -E '^[a-z][a-z0-9_ ]*[ *]pard_[a-z_]+\(' "$prefix/$includedir/pard/pard.h" | grep -v '^typedef' |
    sed -E 's/^[^(]*[ *](pard_[a-z_]+)\(.*/\1/' >"$tmp/functions"
[ -s "$tmp/functions" ] || fail "found no function in pard.h"
while read -r fn; do
    printf '%s\n' "$text" | grep -qE -- "(^|[^a-z_])$fn([^a-z_]|\$)" ||
        fail "libpard.3 does not document $fn"
    [ -f "$man_dir/man3/$fn.3" ] || fail "no man3/$fn.3 stub"
done <"$tmp/functions"
echo "ok: libpard.3 documents every function of pard.h"

# ---------------------------------------------------------------------
step "uninstall: xargs rm < install_manifest.txt"
xargs rm <"$tmp/manifest"
left=$(find "$prefix" -type f -o -type l)
[ -z "$left" ] || fail "files left after the uninstall: $left"

echo "PASS: install, pkg-config, find_package(pard), run, man pages, uninstall"
