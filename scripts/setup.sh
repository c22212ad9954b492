#!/usr/bin/env bash
# Set up a fresh Debian machine: a virtual environment with torch==2.13.0 (installed FIRST, so that no
# range pulls a multi-GB CUDA build), the package with its dev extra, and the mosquitto broker. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing the mosquitto broker (apt)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
  else
    echo "setup: mosquitto is not installed; run 'sudo apt-get install mosquitto mosquitto-clients'" >&2
    echo "setup: (without it the broker tests skip and s2 falls back to the in-process amqtt broker)" >&2
  fi
elif ! command -v mosquitto_sub >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto-clients >/dev/null || true
fi

stamp="$VENV/.s2egru-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
  echo "setup: $VENV is up to date"
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q torch==2.13.0
"$VENV/bin/python" -m pip install -q -e '.[dev]'
touch "$stamp"
echo "setup: done ($VENV)"
