# Sourced by the other scripts: make .venv (Python 3.11+) and install the project
# into it, skipping the install when pyproject.toml has not changed since the last one.
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
    want="$(cat pyproject.toml) $extras"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        .venv/bin/python -m pip install --quiet --upgrade pip
        .venv/bin/python -m pip install --quiet --editable ".$extras"
        printf '%s' "$want" > "$stamp"
    fi
}
