#!/usr/bin/env bash
# Make sure a Chromium is on the PATH for the rendered-book browser tests
# (tests/test_rendered_book.py). Nothing happens when one is there already (Debian's chromium,
# or Google Chrome as on GitHub's runners); otherwise Debian's `chromium` package is installed
# with apt-get, as root or through sudo. Playwright's own browser download is never used.
set -euo pipefail

for browser in chromium chromium-browser google-chrome google-chrome-stable; do
  if command -v "$browser" >/dev/null 2>&1; then
    echo "browser: $(command -v "$browser")"
    exit 0
  fi
done

if [ "$(id -u)" = 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  echo "browser: no Chromium, and no way to install one (not root, no sudo)" >&2
  exit 1
fi
echo "browser: installing Debian's chromium"
"${SUDO[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
echo "browser: $(command -v chromium)"
