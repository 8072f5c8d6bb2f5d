# Sourced by the other scripts: make .venv (Python 3.11+) and install the project
# into it, with the Python client (client/: a distribution of its own, which the
# service depends on and no index has), skipping the install when neither
# pyproject.toml (the service's, the client's) nor constraints.txt has changed since
# the last one. Installs take constraints.txt's versions, the ones the tests last
# passed with (scripts/constraints): a release published since then (redis 8.2 added
# type hints that failed mypy on a clean clone) cannot break a fresh clone.
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
    want="$(cat pyproject.toml client/pyproject.toml constraints.txt) $extras"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        .venv/bin/python -m pip install --quiet --upgrade pip
        .venv/bin/python -m pip install --quiet --constraint constraints.txt \
            --editable ./client --editable ".$extras"
        printf '%s' "$want" > "$stamp"
    fi
}
