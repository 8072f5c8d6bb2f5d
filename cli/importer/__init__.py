"""`endcontact import`, in four parts: command.py (the options, and the parts tied
together), reading.py (the input and the results resumed, each row checked),
sending.py (batches through the client, retries, Ctrl-C) and results.py (the results
file in input order, the reason beside it, the summary). Split where the work changes
hands, so each part fits in the head: rows read become Entry objects, sent they get an
outcome, and written they leave in input order."""

from cli.importer.command import add_parser

__all__ = ["add_parser"]
