#!/usr/bin/env bash
# The browser tests drive Debian's Chromium headless (through Playwright's Python client, which never
# downloads a browser of its own). Install it when it is missing and this machine can.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: no apt-get here; install Chromium yourself: the browser tests fail without it" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
    echo "note: not root and no sudo; the browser tests fail until chromium is installed" >&2; exit 0
  fi
fi
$sudo apt-get install -y -q chromium >/dev/null 2>&1 || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q chromium >/dev/null; }
