# Sourced by scripts/run and scripts/test: a project virtualenv with the pinned requirements.
# Usage: ensure_venv requirements/base.txt
ensure_venv() {
  local requirements=$1
  local python=${PYTHON:-}
  if [ -z "$python" ]; then
    if command -v python3.11 >/dev/null 2>&1; then python=python3.11; else python=python3; fi
  fi
  if [ ! -x .venv/bin/python ]; then
    echo "Creating .venv with $($python --version 2>&1)"
    "$python" -m venv .venv
  fi
  local stamp=".venv/.installed-$(basename "$requirements")"
  if [ ! -f "$stamp" ] || [ "$requirements" -nt "$stamp" ] || [ requirements/base.txt -nt "$stamp" ]; then
    echo "Installing $requirements into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -r "$requirements"
    touch "$stamp"
  fi
}
