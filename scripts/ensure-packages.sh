#!/usr/bin/env bash
# Installs the Debian packages of the commands that are missing (apt-get, through sudo when not
# root), so a fresh machine runs the tests with nothing set up by hand.
#
# Usage: scripts/ensure-packages.sh COMMAND:PACKAGE...   e.g. go:golang-go valgrind:valgrind
set -euo pipefail
missing=()
for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
((${#missing[@]})) || exit 0
echo "ensure-packages: installing ${missing[*]}" >&2
sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
"${sudo[@]}" apt-get update -qq >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >&2
