"""compose.yaml as compose reads it: YAML, then `${...}` interpolation."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from tests.processes import ROOT

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:\?|:-)([^}]*))?\}")


class MissingVariable(ValueError):
    pass


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's interpolation of every string value in the file."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.groups()
        given = env.get(name, "")
        if operator == ":?" and not given:
            raise MissingVariable(f"{name}: {argument}")
        if operator == ":-" and not given:
            return str(argument)
        return given

    return _VARIABLE.sub(one, value)


def load_compose(env: Mapping[str, str]) -> dict[str, Any]:
    raw = yaml.safe_load((ROOT / "compose.yaml").read_text())
    result: dict[str, Any] = interpolate(raw, env)
    return result
