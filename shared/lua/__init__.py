"""Lua scripts, kept in `.lua` files: a package's in its `lua/` folder (shared's here).

A module reads its scripts once, when it is imported, into constants; each client
registers them once (`register_script`). A script that starts with a piece others
share (shared.clock's SERVER_TIME, the dispatcher's key prefixes) is those strings
joined in Python, in the order the script needs them: the server runs the joined text.
"""

from __future__ import annotations

from importlib import resources


def load(package: str, name: str) -> str:
    """The text of `name`.lua in the `lua/` folder of `package` (e.g. "shared")."""
    return resources.files(package).joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")
