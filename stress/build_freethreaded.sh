#!/usr/bin/env bash
# Build a free-threaded CPython 3.13 (--disable-gil) from Debian's source
# package into a local prefix outside the repository, install threadlisten into
# it (editable) with a pinned test stack, then run the test suite and a stress
# run on it.  Not part of CI: the build alone takes about 3.5 minutes on 2 cores.
#
# Why Debian's source package: no distribution ships a free-threaded binary,
# uv's and the npm builds download from GitHub, and only the trixie source
# package of python3.13 can be fetched here (see
# ../shared/reference/race-testing.md §5).  The package is fetched into a
# private apt state, so the system's apt configuration is never touched.  Only
# the upstream tarball (python3.13_*.orig.tar.xz) is used; Debian's patches are
# not applied, so the result is a plain upstream CPython.
#
# Usage: stress/build_freethreaded.sh [STRESS ARGS...]
#   The arguments, if any, replace the default stress-run arguments.
# Environment:
#   PY313T_PREFIX  where to install the interpreter (~/.cache/threadlisten/py313t)
#   PY313T_WORK    where to fetch and build (~/.cache/threadlisten/build-py313t)
#   SKIP_TESTS=1   skip the test suite;  SKIP_STRESS=1  skip the stress run
#
# Every stage is skipped when its result already exists, so a second run only
# tests.  The interpreter must never be committed: it lives outside the repo.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/threadlisten
PREFIX=${PY313T_PREFIX:-$CACHE/py313t}
WORK=${PY313T_WORK:-$CACHE/build-py313t}
PY=$PREFIX/bin/python3.13t

# The last Hypothesis release with a pure-Python wheel: later ones ship only
# cp314t/abi3t wheels and an sdist that needs crates.io (race-testing.md §5).
HYPOTHESIS_PIN="hypothesis==6.155.7"
PYTEST_PIN="pytest==9.2.0"
PYTEST_TIMEOUT_PIN="pytest-timeout==2.4.0"
RICH_PIN="rich>=13"

# The default stress run on the free-threaded build: the same shape as the
# long GIL run (see docs/stress.md); override by passing arguments.
DEFAULT_STRESS_ARGS=(--duration 600 --operations 1000000 --connections 200000
    --time-limit 1500 --seed 1 --live plain --progress-interval 30
    --json stress/results/freethreaded-cpython3.13t.json)

case "$PREFIX" in
"$REPO"/*)
    echo "PY313T_PREFIX must be outside the repository" >&2
    exit 2
    ;;
esac

log() { printf '== %s %s\n' "$(date -u +%H:%M:%S)" "$*"; }

fetch_source() {
    local apt="$WORK/apt"
    mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$apt/etc"
    # A private apt state: its own source list, lists and cache; the system's
    # dpkg status is only read.  trixie's Release is signed with keys that
    # bookworm's debian-archive-keyring already has.
    cat >"$apt/etc/sources.list" <<'EOF'
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
EOF
    local opts=(
        -o "Dir::Etc::SourceList=$apt/etc/sources.list"
        -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::State::Lists=$apt/lists"
        -o "Dir::Cache=$apt"
        -o "Dir::Cache::Archives=$apt/archives"
        -o "Debug::NoLocking=1"
        -o "APT::Sandbox::User=root"
    )
    log "apt-get update (private state in $apt)"
    apt-get "${opts[@]}" -qq update
    log "apt-get source --download-only python3.13/trixie"
    (cd "$WORK" && apt-get "${opts[@]}" -qq source --download-only python3.13/trixie)
}

build() {
    mkdir -p "$WORK"
    local tarball
    tarball=$(find "$WORK" -maxdepth 1 -name 'python3.13_*.orig.tar.xz' | sort | tail -n1)
    if [ -z "$tarball" ]; then
        fetch_source
        tarball=$(find "$WORK" -maxdepth 1 -name 'python3.13_*.orig.tar.xz' | sort | tail -n1)
    fi
    [ -n "$tarball" ] || { echo "no python3.13 orig tarball fetched" >&2; exit 1; }
    local src="$WORK/src"
    rm -rf "$src"
    mkdir -p "$src"
    log "extracting $(basename "$tarball")"
    tar -xJf "$tarball" -C "$src" --strip-components=1
    log "configure --disable-gil --prefix=$PREFIX"
    # No --enable-optimizations/--with-lto: PGO doubles the build time and the
    # point here is correctness under real parallelism, not speed.
    (cd "$src" && ./configure --disable-gil --prefix="$PREFIX" --with-ensurepip=install \
        >"$WORK/configure.log" 2>&1)
    log "make -j$(nproc) (log: $WORK/make.log)"
    (cd "$src" && make -j"$(nproc)" >"$WORK/make.log" 2>&1)
    log "make install"
    (cd "$src" && make install >"$WORK/install.log" 2>&1)
}

if [ ! -x "$PY" ]; then
    start=$(date +%s)
    build
    log "built in $(($(date +%s) - start)) s"
fi

"$PY" - <<'EOF'
import sys, sysconfig
assert sysconfig.get_config_var("Py_GIL_DISABLED") == 1, "not a free-threaded build"
print(sys.version)
print("Py_GIL_DISABLED=1, GIL enabled now:", sys._is_gil_enabled())
EOF

export PIP_ROOT_USER_ACTION=ignore
if ! "$PY" -c 'import threadlisten, pytest, pytest_timeout, hypothesis, rich' 2>/dev/null; then
    log "installing threadlisten (editable) and the pinned test stack"
    "$PY" -m pip install --quiet --disable-pip-version-check \
        "$PYTEST_PIN" "$PYTEST_TIMEOUT_PIN" "$HYPOTHESIS_PIN" "$RICH_PIN"
    "$PY" -m pip install --quiet --disable-pip-version-check --no-deps -e "$REPO"
fi

cd "$REPO"
export PIP_ROOT_USER_ACTION=ignore
# PYTHON_GIL=0 keeps the GIL off even if some extension module forgot to
# declare free-threading support (it would otherwise re-enable the GIL).
export PYTHON_GIL=0
status=0
if [ "${SKIP_TESTS:-0}" != 1 ]; then
    log "test suite on $("$PY" -c 'import sys; print(sys.version.split()[0])')t"
    # -p no:cacheprovider: leave the GIL venv's .pytest_cache alone.
    "$PY" -m pytest -q -p no:cacheprovider || status=$?
    log "test suite exit status $status"
fi
if [ "${SKIP_STRESS:-0}" != 1 ]; then
    if [ $# -gt 0 ]; then
        args=("$@")
    else
        args=("${DEFAULT_STRESS_ARGS[@]}")
    fi
    log "python -m stress ${args[*]}"
    stress_status=0
    "$PY" -m stress "${args[@]}" || stress_status=$?
    log "stress exit status $stress_status"
    [ "$stress_status" -eq 0 ] || status=$stress_status
fi
exit "$status"
