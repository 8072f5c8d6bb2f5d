"""What stops an import, each with the one line the command prints for it. Apart from
the parts, since reading, sending and the results all raise them and the command
catches them."""

from __future__ import annotations


class UsageError(Exception):
    """Something to fix before the import can run; str() is the one line to print."""


class Fatal(Exception):
    """The service refuses this import as a whole (a wrong key, a wrong URL); str() is
    the one line to print. Raised by a Send (sending.py)."""
