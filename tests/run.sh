#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what the tests use (Debian's python3 with
# numpy and msgpack, which is what our users open the cache files with), checks the code style, then builds and
# runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(python3 python3-numpy python3-msgpack python3-grpcio python3-protobuf python3-tqdm python3-venv python3-onnx fuse3 python3-pyfuse3 nginx)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
# The openai npm client test (tests/openai) needs node and npm: a machine that has them, from wherever, keeps its own.
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
  echo "Installing Debian packages the tests need: ${missing[*]}"
  sudo=""
  [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  # Debian's nginx starts its default site (every address, port 80) on install; the routing tests run their own nginx
  # on 127.0.0.1, so no service may start: a policy-rc.d that denies it (101), unless the machine already has one.
  policy=/usr/sbin/policy-rc.d
  placed_policy=""
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod 755 "$policy" && placed_policy=yes
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  [[ -z $placed_policy ]] || $sudo rm -f "$policy"
  # A machine's own policy may have let it start: stop it, so nothing listens on port 80.
  if [[ " ${missing[*]} " == *" nginx "* && -s /run/nginx.pid ]]; then $sudo kill "$(cat /run/nginx.pid)"; fi
fi

# The openai npm package at the version of the committed lock file, into tests/openai/node_modules (git-ignored).
npm ci --prefix tests/openai --no-audit --no-fund --loglevel=error

# The code style .editorconfig sets, checked before any test runs: code the formatter would change fails the run.
if ! dotnet format EmbeddingCache.sln --verify-no-changes; then
  echo "The code does not follow .editorconfig; 'dotnet format EmbeddingCache.sln' fixes it." >&2
  exit 1
fi
echo "dotnet format --verify-no-changes: the code follows .editorconfig"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
dotnet test EmbeddingCache.sln -c Release 2>&1 | tee "$log" || status=$?

# One closing line over every test assembly, e.g. "total: 57 passed, 0 failed".
awk '/(Passed|Failed)!/ {
       for (i = 1; i <= NF; i++) { if ($i == "Failed:") f += $(i+1); if ($i == "Passed:") p += $(i+1) }
     }
     END { printf "total: %d passed, %d failed\n", p, f }' FS='[ ,]+' "$log"
exit "$status"
