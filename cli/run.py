"""`endcontact run`: the web and a worker as child processes, stopped together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType

# Warm shutdown takes up to the request deadline plus a margin; past this, kill.
STOP_TIMEOUT = 20.0
START_TIMEOUT = 30.0


class _Stop(Exception):
    pass


def _spawn(args: list[str], redis_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "REDIS_URL": redis_url}
    # Own sessions: a terminal's Ctrl-C reaches only us, and we stop the children in
    # order, once each (a second SIGINT would make Celery abandon its tasks).
    return subprocess.Popen([sys.executable, "-m", "cli", *args], env=env, start_new_session=True)


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=1) as response:  # noqa: S310
            return bool(response.status == 200)
    except OSError:
        return False


def _banner(base: str) -> str:
    command = Path(sys.executable).parent / "endcontact"
    with_dir = os.path.relpath(command) if str(command).startswith(os.getcwd()) else command
    return f"""
endcontact is running on {base}  (Ctrl-C stops it)

Create an API key, in another terminal:
  {with_dir} keys create --company acme --campaign spring-promo

Then end contact with a lead (put the key's last line in KEY):
  curl -i {base}/api/v1/leads/end-contact -H "x-api-key: $KEY" \\
       -H 'content-type: application/json' -d '{{"phoneNumberList": ["(509) 555-1234"]}}'
  curl -i {base}/api/v1/leads/end-contact/+15095551234 -H "x-api-key: $KEY"
"""


def run_all(redis_url: str, host: str, port: int, concurrency: int) -> int:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    children: list[subprocess.Popen[bytes]] = []
    code = 0
    try:
        children.append(_spawn(["worker", f"--concurrency={concurrency}"], redis_url))
        children.append(_spawn(["web", f"--host={host}", f"--port={port}"], redis_url))
        base = f"http://{host}:{port}"
        deadline = time.monotonic() + START_TIMEOUT
        while not _healthy(base):
            if any(child.poll() is not None for child in children):
                break
            if time.monotonic() > deadline:
                print(f"endcontact: the web did not answer on {base}", file=sys.stderr)
                code = 1
                break
            time.sleep(0.1)
        else:
            print(_banner(base), flush=True)
        while code == 0:
            exited = [child for child in children if child.poll() is not None]
            if exited:
                print(f"endcontact: {exited[0].pid} exited; stopping", file=sys.stderr)
                code = 1
            time.sleep(0.2)
    except _Stop:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop(children)
    return code


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    # Web first, so nothing new arrives, then the worker finishes what it holds.
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
