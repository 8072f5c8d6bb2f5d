"""`endcontact keys create | list | revoke`: the API keys, which only an operator makes."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cli.listing import add_list, print_json, print_table
from cli.servers import open_store
from shared.apikeys import PREFIX as SECRET_PREFIX
from shared.apikeys import ApiKey
from shared.keyspace import feed_name
from shared.settings import Settings


def cmd_keys_create(settings: Settings, args: argparse.Namespace) -> int:
    with open_store(settings) as store:
        try:
            key, secret = store.create_key(args.company, args.campaign, args.label)
        except ValueError as exc:
            print(f"endcontact: {exc}", file=sys.stderr)
            return 2
    print(f"Created {key.id} for company {key.scope.company!r}, campaign {key.scope.campaign!r}.")
    print("The key is shown this once and stored only as a hash:")
    print(secret)
    return 0


KEY_COLUMNS = ("id", "label", "company", "campaign", "createdAt", "revokedAt")


def cmd_keys_list(settings: Settings, args: argparse.Namespace) -> int:
    with open_store(settings) as store:
        keys = [_key_fields(key) for key in store.list_keys()]
    if args.json:
        print_json(keys)
    else:
        print_table(KEY_COLUMNS, keys)
    return 0


def _key_fields(key: ApiKey) -> dict[str, Any]:
    """KEY_COLUMNS of `key`; None for no label, or not revoked."""
    return {
        "id": key.id,
        "label": key.label or None,
        "company": key.scope.company,
        "campaign": key.scope.campaign,
        "createdAt": key.created_at,
        "revokedAt": key.revoked_at,
    }


def cmd_keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    if args.key_id.strip().startswith(SECRET_PREFIX):
        # Said without the argument: a secret in a terminal's scrollback is one more copy.
        print(
            "endcontact: that is a key's secret; revoke takes its id, key_…, "
            "see `endcontact keys list`",
            file=sys.stderr,
        )
        return 2
    with open_store(settings) as store:
        key = store.revoke_key(args.key_id)
        if key is None:
            print(f"endcontact: no key with id {args.key_id!r}", file=sys.stderr)
            return 1
        disable = not args.keep_webhooks
        hooks = store.webhooks().key_revoked(key.id, feed_name(key.scope), disable=disable)
    print(f"Revoked {key.id} at {key.revoked_at}.")
    if not hooks:
        print(f"No webhook it created was {'disabled' if disable else 'kept'}.")
        return 0
    plural = "" if len(hooks) == 1 else "s"
    if disable:
        print(f"Disabled {len(hooks)} webhook{plural} it created (nothing more is sent to them):")
    else:
        print(f"Kept {len(hooks)} webhook{plural} it created:")
    for hook in hooks:
        print("\t".join([hook.id, hook.scope.campaign, hook.url]))
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`keys` and its subcommands."""
    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key; prints it last")
    create.add_argument("--company", required=True)
    create.add_argument("--campaign", required=True)
    create.add_argument("--label", default="", help="a name for it, shown by keys list")
    create.set_defaults(handler=cmd_keys_create)
    key_list = add_list(
        key_commands,
        "id, label, company, campaign, createdAt, revokedAt; never a secret",
        "an array of objects with those fields, null for none (default: a table)",
    )
    key_list.set_defaults(handler=cmd_keys_list)
    revoke = key_commands.add_parser(
        "revoke", help="refuse the key from now on and disable the webhooks it created"
    )
    revoke.add_argument("key_id", metavar="KEY_ID", help="its id, key_... (see keys list)")
    revoke.add_argument(
        "--keep-webhooks",
        action="store_true",
        help="keep the webhooks it created enabled (a rotation; default: disable them)",
    )
    revoke.set_defaults(handler=cmd_keys_revoke)
