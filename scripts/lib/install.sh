# Shared by scripts/setup (the tests' toolchain) and scripts/setup-demo (the demo's few parts); sourced,
# not run. Each step prints one line saying what it installs; the installers' own output is shown only
# when they fail, so that a start which installs nothing prints a few short lines.

# The word in front of each step line: "setup", or "demo" when the demo's setup sources this.
: "${STEP_NAME:=setup}"

step() { echo "$STEP_NAME: $*"; }

# Runs a command with its output held back, and shows that output only if the command fails.
quietly() {
  local log status=0
  log=$(mktemp)
  "$@" >"$log" 2>&1 || status=$?
  [ "$status" = 0 ] || { cat "$log" >&2; rm -f "$log"; echo "$STEP_NAME: failed: $*" >&2; exit "$status"; }
  rm -f "$log"
}

# apt_need COMMAND:PACKAGE ...: installs from Debian the package of each command that is not on PATH.
apt_need() {
  local pair missing=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
  done
  if [ ${#missing[@]} = 0 ]; then
    step "Debian packages: all present (${*%%:*})"
    return
  fi
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  step "Debian packages: installing ${missing[*]} with apt-get"
  quietly $sudo apt-get update -qq
  quietly $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Like apt_need, for packages that bring files rather than a command: file:package pairs.
apt_need_files() {
  local pair missing=()
  for pair in "$@"; do
    [ -e "${pair%%:*}" ] || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} = 0 ] && return
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  step "Debian packages: installing ${missing[*]} with apt-get"
  quietly $sudo apt-get update -qq
  quietly $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# The interpreter a new virtualenv is made with. The locks are resolved for CPython 3.11 (scripts/lock),
# so another version is refused unless PYTHON names it on purpose.
python_for_venv() {
  if [ -n "${PYTHON:-}" ]; then
    echo "$PYTHON"
    return
  fi
  local py
  py=$(command -v python3.11 || command -v python3 || true)
  if [ -z "$py" ] || ! "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' >/dev/null 2>&1; then
    echo "$STEP_NAME: needs Python 3.11 (requirements/ is locked for CPython 3.11), found ${py:-no python3};" \
      "install python3.11 or set PYTHON=/path/to/python3.11" >&2
    exit 1
  fi
  echo "$py"
}

# venv_install VENV LOCK ...: the virtualenv VENV with each hash-pinned lock installed in order
# (docs/supply-chain.md), then the project itself, editable and without dependencies. Only when a lock
# or pyproject.toml changed since the last install into VENV: a start which changes nothing runs no pip.
venv_install() {
  local venv=$1 lock want
  shift
  want=$(cat "$@" pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ ! -x "$venv/bin/python" ]; then
    local py
    py=$(python_for_venv)
    step "virtualenv: creating $venv with $py"
    quietly "$py" -m venv "$venv"
    # As Python 3.13's venv does: git, and the tools that follow .gitignore (ruff), leave it alone.
    echo '*' >"$venv/.gitignore"
  fi
  if [ "$(cat "$venv/.locks-installed" 2>/dev/null)" = "$want" ]; then
    step "Python packages: $venv is up to date with $*"
    return
  fi
  local pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
  for lock in "$@"; do
    step "Python packages: installing $(grep -c '^[A-Za-z0-9].*==' "$lock") hash-pinned from $lock into $venv"
    quietly "${pip[@]}" --require-hashes -r "$lock"
  done
  step "Python packages: installing the project into $venv (editable, no dependencies)"
  quietly "${pip[@]}" --no-deps --no-build-isolation -e .
  echo "$want" >"$venv/.locks-installed"
}
