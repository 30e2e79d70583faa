#!/bin/sh
# Make sure Debian's Chromium is installed for the Playwright browser test (tests/test_browser.py).
# Prints the browser path and exits 0 when it is there; exits 1 with the reason when it cannot be installed
# (not root, no apt-get, no network): the test then skips with that reason.
set -u
BROWSER=${CLO_CHROMIUM:-/usr/bin/chromium}
if [ -x "$BROWSER" ]; then
    echo "$BROWSER"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium is missing and apt-get is not available; install Chromium and set CLO_CHROMIUM" >&2
    exit 1
fi
if [ "$(id -u)" != "0" ]; then
    echo "chromium is missing; install it as root: apt-get update && apt-get install -y chromium" >&2
    exit 1
fi
log=$(mktemp)
if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; } >"$log" 2>&1; then
    echo "apt-get could not install chromium:" >&2
    tail -n 5 "$log" >&2
    rm -f "$log"
    exit 1
fi
rm -f "$log"
if [ -x "$BROWSER" ]; then
    echo "$BROWSER"
    exit 0
fi
echo "apt-get installed chromium but $BROWSER is not there" >&2
exit 1
