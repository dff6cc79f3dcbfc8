#!/usr/bin/env bash
# Checks that every example the README shows whole is its file, as the tests build and run it:
# a line `<!-- example: PATH -->` must be followed by a fenced code block equal to PATH.
#
# Usage: scripts/check-readme-examples.sh [README]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
readme=${1:-README.md}
fail=0 count=0
while IFS= read -r path; do
    count=$((count + 1))
    block=$(awk -v marker="<!-- example: $path -->" '
        $0 == marker { found = 1; next }
        found == 1 && /^```/ { found = 2; next }
        found == 2 && /^```$/ { exit }
        found == 2 { print }' "$readme")
    if [[ ! -f $path ]]; then
        echo "check-readme-examples: $readme shows $path, which does not exist" >&2
        fail=1
    elif [[ $block != "$(cat "$path")" ]]; then
        echo "check-readme-examples: the example in $readme differs from $path:" >&2
        diff <(printf '%s\n' "$block") "$path" >&2 || true
        fail=1
    fi
done < <(sed -n 's/^<!-- example: \(.*\) -->$/\1/p' "$readme")
if ((count == 0)); then
    echo "check-readme-examples: $readme marks no example" >&2
    exit 1
fi
((fail == 0)) && echo "check-readme-examples: $count examples match their files"
