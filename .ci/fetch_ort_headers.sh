#!/usr/bin/env bash
# ONNX Runtime C/C++ headers for runtime/cpp: the npm package
# com.github.asus4.onnxruntime (MIT, ORT 1.29 headers). The library comes from the onnxruntime
# wheel already installed in the venv, so only the headers are extracted.
# The 150 MB tarball is cached; a rerun with headers in place does nothing.
# Prints the include directory. Override the cache root with S4S_CACHE (default ~/.cache/s4s-export).
set -euo pipefail
VERSION=0.4.9
CACHE="${S4S_CACHE:-${S4S_EXPORT_CACHE:-$HOME/.cache/s4s-export}}"  # S4S_EXPORT_CACHE: the deprecated name
DEST="$CACHE/onnxruntime-headers/$VERSION/include"
if [[ -f "$DEST/onnxruntime_cxx_api.h" ]]; then
  echo "$DEST"
  exit 0
fi
command -v npm >/dev/null || { echo "fetch_ort_headers: npm is needed (apt-get install npm)" >&2; exit 1; }
TGZ="$CACHE/npm/com.github.asus4.onnxruntime-$VERSION.tgz"
if [[ ! -f "$TGZ" ]]; then
  mkdir -p "$CACHE/npm"
  (cd "$CACHE/npm" && npm pack "com.github.asus4.onnxruntime@$VERSION" --silent >&2)
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
tar xzf "$TGZ" -C "$TMP" --wildcards 'package/Plugins/iOS~/*/ios-arm64_x86_64-simulator/*/Headers/*'
mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST.tmp" && mkdir -p "$DEST.tmp"
cp "$TMP"/package/Plugins/iOS~/*/ios-arm64_x86_64-simulator/*/Headers/*.h "$DEST.tmp/"
mv "$DEST.tmp" "$DEST"
echo "$DEST"
