#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what the tests use (Debian's python3 with
# numpy and msgpack, which is what our users open the cache files with), checks the code style, then builds and
# runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(python3 python3-numpy python3-msgpack python3-grpcio python3-protobuf python3-tqdm python3-venv python3-onnx fuse3 python3-pyfuse3)
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
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
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
