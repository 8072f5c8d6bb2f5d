# Sourced by the other scripts: make .venv (Python 3.11+) and install the project
# into it, skipping the install when pyproject.toml and constraints.txt have not
# changed since the last one. Installs take constraints.txt's versions, the ones the
# tests last passed with (scripts/constraints): a release published since then (redis
# 8.2 added type hints that failed mypy on a clean clone) cannot break a fresh clone.
ensure_venv() {
    extras="$1"
    python="${PYTHON:-python3}"
    if [ ! -x .venv/bin/python ]; then
        "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
            echo "endcontact needs Python 3.11 or newer as '$python' (set PYTHON=...)" >&2
            exit 1
        }
        "$python" -m venv .venv
    fi
    stamp=".venv/.installed$extras"
    want="$(cat pyproject.toml constraints.txt) $extras"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        .venv/bin/python -m pip install --quiet --upgrade pip
        .venv/bin/python -m pip install --quiet --constraint constraints.txt --editable ".$extras"
        printf '%s' "$want" > "$stamp"
    fi
}
