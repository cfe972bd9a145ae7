#!/usr/bin/env bash
# Fetch the JavaScript that draws the book's ipywidgets, so that the built HTML serves it from its
# own _static instead of a CDN (book/_ext/widgets_offline.py copies it into the build).
#   bash tools/widgets_js.sh          (tools/setup.sh runs it; the book build runs it when needed)
# What it fetches, pinned by version and SHA-256, from the npm registry (plain HTTPS, no npm):
#   requirejs 2.3.8                          require.js (MIT)
#   @jupyter-widgets/html-manager 1.0.15     dist/embed-amd.js and the fonts its CSS names
#                                            (BSD-3-Clause); 1.0.15 is the html-manager of the
#                                            ipywidgets 8.1.9 release (jupyterlab-manager 5.0.16,
#                                            same commit): bump both with ipywidgets.
# into third_party/widgets_js/ (ignored by git; WIDGETS_JS_DIR=... elsewhere), laid out as the
# page's requirejs sees the modules: require.js, @jupyter-widgets/html-manager/dist/embed-amd.js
# (the bundle finds its fonts next to the URL of the module it defines). Idempotent: does nothing
# when the folder already holds these versions. NPM_CONFIG_REGISTRY: another registry.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${WIDGETS_JS_DIR:-third_party/widgets_js}
REGISTRY=${NPM_CONFIG_REGISTRY:-https://registry.npmjs.org}
REGISTRY=${REGISTRY%/}
REQUIREJS_VERSION=2.3.8
REQUIREJS_SHA256=777158e89275e16bd51aec3ef714fbcb5dc45789e7078659933bc814916d7dec
HTML_MANAGER_VERSION=1.0.15
HTML_MANAGER_SHA256=2b9d65cb7913e1c7d671757a10008b32c9c2448d4429513371e55c07d6107638
BUNDLE_DIR=@jupyter-widgets/html-manager/dist
STAMP="requirejs@$REQUIREJS_VERSION $REQUIREJS_SHA256
@jupyter-widgets/html-manager@$HTML_MANAGER_VERSION $HTML_MANAGER_SHA256"

if [ -f "$DEST/VERSIONS" ] && [ "$(cat "$DEST/VERSIONS")" = "$STAMP" ] \
   && [ -f "$DEST/require.js" ] && [ -f "$DEST/$BUNDLE_DIR/embed-amd.js" ]; then
  echo "widgets js: up to date in $DEST (requirejs $REQUIREJS_VERSION, html-manager $HTML_MANAGER_VERSION)"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

download() {  # URL FILE
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$2" "$1"
  else
    "${PYTHON:-python3}" -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$1" "$2"
  fi
}

fetch() {  # URL SHA256 DIR: download a package tarball, check it, unpack it into DIR
  local file="$tmp/$(basename "$1")"
  if ! download "$1" "$file"; then
    echo "widgets js: could not download $1" >&2
    return 1
  fi
  local sum
  sum=$(sha256sum "$file" | cut -d' ' -f1)
  if [ "$sum" != "$2" ]; then
    echo "widgets js: $1 has SHA-256 $sum, expected $2" >&2
    return 1
  fi
  mkdir -p "$3"
  tar -xzf "$file" -C "$3"
}

fetch "$REGISTRY/requirejs/-/requirejs-$REQUIREJS_VERSION.tgz" "$REQUIREJS_SHA256" "$tmp/requirejs"
fetch "$REGISTRY/@jupyter-widgets/html-manager/-/html-manager-$HTML_MANAGER_VERSION.tgz" \
  "$HTML_MANAGER_SHA256" "$tmp/html-manager"

new="$tmp/out"
mkdir -p "$new/$BUNDLE_DIR"
cp "$tmp/requirejs/package/require.js" "$new/require.js"     # its header carries the MIT licence
dist="$tmp/html-manager/package/dist"
cp "$dist/embed-amd.js" "$dist/embed.js.LICENSE.txt" "$new/$BUNDLE_DIR/"
# the Font Awesome fonts that the bundled CSS loads (by hashed name, next to the bundle)
cp "$dist"/*.woff2 "$dist"/*.woff "$dist"/*.ttf "$dist"/*.eot "$dist"/*.svg "$new/$BUNDLE_DIR/"
cat > "$new/LICENSES.txt" <<EOF
require.js: RequireJS $REQUIREJS_VERSION, MIT licence, Copyright jQuery Foundation and other
  contributors (https://github.com/requirejs/requirejs/blob/master/LICENSE).
$BUNDLE_DIR/: @jupyter-widgets/html-manager $HTML_MANAGER_VERSION, BSD-3-Clause licence,
  Copyright (c) Jupyter Development Team (https://github.com/jupyter-widgets/ipywidgets/blob/main/LICENSE);
  the licences of what embed-amd.js bundles (jQuery, Lumino, Font Awesome Free: fonts under
  SIL OFL 1.1, CSS under MIT, ...) are listed in $BUNDLE_DIR/embed.js.LICENSE.txt.
Fetched by tools/widgets_js.sh from $REGISTRY.
EOF
printf '%s\n' "$STAMP" > "$new/VERSIONS"
rm -rf "$DEST"
mkdir -p "$(dirname "$DEST")"
mv "$new" "$DEST"
echo "widgets js: requirejs $REQUIREJS_VERSION and @jupyter-widgets/html-manager $HTML_MANAGER_VERSION in $DEST"
