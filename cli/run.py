"""`endcontact run`: the web and the workers as child processes, stopped together."""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import urllib.request
from pathlib import Path

from cli.supervisor import Supervisor, cli_command, supervise, web_on

START_TIMEOUT = 60.0
log = logging.getLogger("endcontact.run")


def healthy(base: str) -> bool:
    """The web at `base` answers its health check."""
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=1) as response:  # noqa: S310
            return bool(response.status == 200)
    except OSError:
        return False


def _banner(base: str) -> str:
    command = Path(sys.executable).parent / "endcontact"
    shown = os.path.relpath(command) if str(command).startswith(os.getcwd()) else command
    return f"""
endcontact is running on {base}  (Ctrl-C stops it)

Create an API key, in another terminal:
  {shown} keys create --company acme --campaign spring-promo

Then end contact with a lead (put the key's last line in KEY):
  curl -i {base}/api/v1/leads/end-contact -H "x-api-key: $KEY" \\
       -H 'content-type: application/json' -d '{{"phoneNumberList": ["(509) 555-1234"]}}'
  curl -i {base}/api/v1/leads/end-contact/+15095551234 -H "x-api-key: $KEY"
"""


def run_all(
    servers: dict[str, str], listener: socket.socket, host: str, port: int, concurrency: int
) -> int:
    """`servers`: REDIS_URL and ENDCONTACT_BROKER_URL, for the children. `listener`:
    the bound socket the web serves on (a web restarted after a crash too), so the web
    that answers on `port` is this one, and it never loses the port to another."""
    base = f"http://{host}:{port}"

    def announce(children: Supervisor) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while not healthy(base):
            # A child that fails at start-up ends the run at once: restarting it would
            # fail the same way, and the service is not running.
            exited = children.exited()
            if exited is not None:
                log.error("%s before the web answered: stopping", exited)
                return False
            if time.monotonic() > deadline:
                log.error("the web did not answer on %s", base)
                return False
            time.sleep(0.1)
        log.info("endcontact is running on %s", base, extra={"url": base})
        # What to do next, for the person at the terminal (beside the logs, not one of them).
        if sys.stdout.isatty():
            print(_banner(base), flush=True)
        return True

    commands = [
        cli_command("worker", f"--concurrency={concurrency}"),
        web_on(listener),
    ]
    return supervise(commands, servers, announce)
