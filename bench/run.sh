#!/usr/bin/env bash
# Pages benchmark in one command: the app (one process and --processes=2) beside its ceiling (bare
# Tornado on the same templates) and a peer (Flask + gunicorn), with wrk. See bench/README.md.
#   bench/run.sh            full pass (about 10 minutes): table into bench/README.md, bench/pages.png
#   bench/run.sh --quick    smoke run (about 1 minute once seeded): results in bench/out/ only
#   bench/run.sh --help     every option (bench/pages.py)
#   bench/run.sh loop [--quick|--help]   the loop-under-load check instead (bench/loop.py)
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

# The project's own setup: .venv with requirements.txt, a MySQL server that answers.
scripts/setup >/dev/null

# wrk, from Debian/Ubuntu's packages.
if ! command -v wrk >/dev/null; then
  echo "bench: installing wrk"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1 || {
    as_root apt-get update -qq >/dev/null && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } ||
    { echo "bench: cannot install wrk: install it (apt-get install wrk) and run again" >&2; exit 1; }
fi

# Bench-only packages (Flask, gunicorn, matplotlib) into the same .venv, once per change of the list.
want=$(sha256sum bench/requirements.txt | cut -d' ' -f1)
if [ "$(cat .venv/.bench-requirements.sha 2>/dev/null)" != "$want" ]; then
  echo "bench: installing bench/requirements.txt"
  .venv/bin/pip install -q --disable-pip-version-check -r bench/requirements.txt
  echo "$want" > .venv/.bench-requirements.sha
fi

if [ "${1:-}" = loop ]; then
  shift
  exec .venv/bin/python bench/loop.py "$@"
fi
exec .venv/bin/python bench/pages.py "$@"
