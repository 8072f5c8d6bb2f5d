"""`endcontact webhooks list | delete`: a campaign's webhooks, as the API shows them."""

from __future__ import annotations

import argparse
import sys

from cli.listing import add_list, print_json, print_table
from cli.servers import open_store
from shared.apikeys import Scope
from shared.keyspace import feed_name
from shared.settings import Settings

WEBHOOK_COLUMNS = ("id", "url", "events", "createdBy", "createdAt", "disabledAt")


def cmd_webhooks_list(settings: Settings, args: argparse.Namespace) -> int:
    with open_store(settings) as store:
        hooks = store.webhooks().of_feed(feed_name(Scope(args.company, args.campaign)))
    if args.json:
        # The API's GET /api/v1/webhooks body, as the web writes it.
        body = {"webhooks": [hook.to_json() for hook in hooks]}
        print_json(body)
        return 0
    print_table(WEBHOOK_COLUMNS, [hook.to_json() for hook in hooks])
    return 0


def cmd_webhooks_delete(settings: Settings, args: argparse.Namespace) -> int:
    scope = Scope(args.company, args.campaign)
    with open_store(settings) as store:
        webhooks = store.webhooks()
        hook = webhooks.get(args.webhook_id, scope)
        if hook is not None:
            webhooks.delete(hook, feed_name(scope))
    where = f"company {scope.company!r}, campaign {scope.campaign!r}"
    if hook is None:
        print(f"endcontact: no webhook {args.webhook_id!r} in {where}", file=sys.stderr)
        return 1
    print(f"Deleted {hook.id} ({hook.url}) of {where}.")
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`webhooks` and its subcommands."""
    webhooks = commands.add_parser("webhooks", help="list and delete a campaign's webhooks")
    webhook_commands = webhooks.add_subparsers(dest="webhooks_command", required=True)
    listing = add_list(
        webhook_commands,
        "id, url, events, createdBy, createdAt, disabledAt; never a secret",
        "the body GET /api/v1/webhooks answers (default: a table)",
    )
    delete = webhook_commands.add_parser(
        "delete", help="as the API's DELETE: nothing more is sent to it"
    )
    delete.add_argument("webhook_id")
    for command in (listing, delete):
        command.add_argument("--company", required=True)
        command.add_argument("--campaign", required=True)
    listing.set_defaults(handler=cmd_webhooks_list)
    delete.set_defaults(handler=cmd_webhooks_delete)
