#!/usr/bin/env bash
# The host-only tests of the Go and Node bindings (bindings/go, bindings/node) against
# libboxlite installed under target/bindings/prefix (library, header, boxlite.pc; no runtime
# assets): go vet, gofmt, `go test -race`, the examples build, `npm ci`, `node --test`,
# `npm pack` installed into a scratch project, and the README's examples equal to their
# files. Their real-box tests run in the harness tier (tests/harness/cases/bindings-*.sh).
# Installs Debian's Go (golang-go) and npm when they are missing. The last line is
# "N passed, M failed, K skipped".
#
# Usage: scripts/test-bindings.sh
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out=$root/target/bindings
prefix=$out/prefix
passed=0 failed=0 skipped=0
log() { printf 'test-bindings: %s\n' "$*" >&2; }
# check NAME COMMAND...: one check, counted by its exit status.
check() {
    local name=$1
    shift
    if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); log "FAILED: $name"; fi
}
# count_go LOG: adds the results of `go test -v` output.
count_go() {
    passed=$((passed + $(grep -c -- '^--- PASS' "$1")))
    failed=$((failed + $(grep -c -- '^--- FAIL' "$1")))
    skipped=$((skipped + $(grep -c -- '^--- SKIP' "$1")))
}
# count_node LOG: adds the results of `node --test` (its "# pass N" summary lines).
count_node() {
    passed=$((passed + $(awk '/^# pass / {print $3}' "$1" | tail -n 1)))
    failed=$((failed + $(awk '/^# fail / {print $3}' "$1" | tail -n 1)))
    skipped=$((skipped + $(awk '/^# skipped / {print $3}' "$1" | tail -n 1)))
}

scripts/ensure-packages.sh go:golang-go npm:npm || log "could not install Go or npm (see above)"
mkdir -p "$out"
rm -rf "$prefix"
if ! PREFIX=$prefix scripts/install.sh --no-assets --debug >"$out/install.log" 2>&1; then
    cat "$out/install.log" >&2
    log "installing libboxlite failed"
    echo "0 passed, 1 failed, 0 skipped"
    exit 1
fi
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
# Nothing is downloaded: both bindings use their standard libraries only (and koffi, from
# npm ci).
export GOFLAGS=-mod=mod GOPROXY=off
# A build cache of its own: Go's cache does not key the link on pkg-config's rpath, so a binary
# linked against another installation (the harness's) could come back from a shared cache.
export GOCACHE=$out/go-cache

# run_in DIR COMMAND...: runs COMMAND in DIR.
run_in() { (cd "$1" && "${@:2}"); }
go_dir=bindings/go node_dir=bindings/node

check "go vet" run_in $go_dir go vet ./...
check "gofmt" test -z "$(run_in $go_dir gofmt -l .)"
check "go build of the examples" run_in $go_dir go build -o "$out/go-hello" ./examples/hello
run_in $go_dir go test -race -count=1 -v ./... >"$out/go-test.log" 2>&1
rc=$?
cat "$out/go-test.log"
count_go "$out/go-test.log"
if ((rc != 0)) && ! grep -q -- '^--- FAIL' "$out/go-test.log"; then failed=$((failed + 1)); fi

check "npm ci" run_in $node_dir npm ci --no-audit --no-fund --loglevel=error
BOXLITE_LIBRARY=$prefix/lib/libboxlite.so run_in $node_dir node --test test/ >"$out/node-test.log" 2>&1
rc=$?
cat "$out/node-test.log"
count_node "$out/node-test.log"
if ((rc != 0)) && ! grep -q '^# fail [1-9]' "$out/node-test.log"; then failed=$((failed + 1)); fi

# The package installs and loads in a project of its own.
pack_installs() {
    local scratch=$out/node-pack tgz
    rm -rf "$scratch" && mkdir -p "$scratch" || return 1
    tgz=$(run_in $node_dir npm pack --silent --pack-destination "$scratch") || return 1
    run_in "$scratch" npm init -y >/dev/null &&
        run_in "$scratch" npm install --no-audit --no-fund --loglevel=error "./$tgz" &&
        BOXLITE_LIBRARY=$prefix/lib/libboxlite.so run_in "$scratch" node -e \
            "if (!require('boxlite').version()) process.exit(1)"
}
check "npm pack installs" pack_installs

check "README examples" scripts/check-readme-examples.sh README.md
check "the Node README's example" scripts/check-readme-examples.sh bindings/node/README.md
echo "$passed passed, $failed failed, $skipped skipped"
((failed == 0))
