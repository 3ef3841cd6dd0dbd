#!/usr/bin/env bash
# Sums the "test result:" lines of a cargo test log into one line.
set -euo pipefail
log="$1"
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) g += $i } }
     END { printf "\n== tilekit tests: %d passed, %d failed, %d ignored ==\n", p, f, g }' "$log"
