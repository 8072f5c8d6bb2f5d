"""The Lua scripts in `.lua` files (shared/lua): each is part of a script the service
registers, each registered script is registered somewhere, and each file ships in the
wheel (pyproject's package-data; the Dockerfile installs that wheel). That the server
compiles them is tests/test_lua.py's."""

from __future__ import annotations

import importlib
import tomllib
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("api", "cli", "client", "shared", "worker")


def _files(suffix: str) -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob(f"*{suffix}"))


def lua_files() -> list[Path]:
    return _files(".lua")


def registered_scripts() -> dict[str, str]:
    """The scripts of the modules that load Lua files: their `..._SCRIPT` strings, by
    module and name."""
    scripts = {}
    for path in _files(".py"):
        if "lua.load(" not in path.read_text(encoding="utf-8"):
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        module = importlib.import_module(".".join(parts).removesuffix(".__init__"))
        for name, value in vars(module).items():
            if name.endswith("_SCRIPT") and isinstance(value, str):
                scripts[f"{module.__name__}.{name}"] = value
    return scripts


def test_every_lua_file_is_part_of_a_registered_script() -> None:
    scripts = registered_scripts().values()
    texts = {path: path.read_text(encoding="utf-8") for path in lua_files()}
    assert texts
    unused = [
        str(path.relative_to(ROOT))
        for path, text in texts.items()
        if not any(text.strip() and text in script for script in scripts)
    ]
    assert unused == []


def test_every_script_is_registered() -> None:
    sources = "".join(path.read_text(encoding="utf-8") for path in _files(".py"))
    names = [name.rpartition(".")[2] for name in registered_scripts()]
    assert names
    assert [name for name in names if f"register_script({name})" not in sources] == []


def test_every_lua_file_ships_in_the_wheel() -> None:
    with (ROOT / "pyproject.toml").open("rb") as file:
        package_data = tomllib.load(file)["tool"]["setuptools"]["package-data"]

    def shipped(path: Path) -> bool:
        """As setuptools reads package-data: a package's patterns (or "*"'s), each
        relative to the package's folder, any folder above the file."""
        for package in path.relative_to(ROOT).parents[:-1]:
            patterns = [*package_data.get("*", []), *package_data.get(".".join(package.parts), [])]
            where = path.relative_to(ROOT / package).as_posix()
            if any(fnmatch(where, pattern) for pattern in patterns):
                return True
        return False

    assert [str(path.relative_to(ROOT)) for path in lua_files() if not shipped(path)] == []
