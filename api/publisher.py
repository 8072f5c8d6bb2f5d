"""Publishing Celery task messages from asyncio, a request's messages in one LPUSH.

Celery's own `apply_async` is synchronous (it would block the event loop or need a
thread per request) and sends one LPUSH per message. Here Celery builds each
message's headers and body (`app.amqp.as_task_v2`, so the protocol stays Celery's),
we wrap them in the envelope kombu's Redis transport puts on the list, and one
LPUSH carries them all. A stock Celery worker consumes them as if `apply_async`
had sent them.
"""

from __future__ import annotations

import base64
import json
import socket
from datetime import datetime
from typing import TYPE_CHECKING, Any

from celery import Celery

from shared.tasks import QUEUE, TASK_NAME

if TYPE_CHECKING:
    import redis.asyncio

    from api.admission import Admission


class TaskPublisher:
    def __init__(self, client: redis.asyncio.Redis, admission: Admission | None = None) -> None:
        self._redis = client
        # The web's: its pushes go through the overload check (api.admission). Without
        # one (tools that fill the queue), a plain LPUSH.
        self._admission = admission
        # Only used to build messages: no broker is configured, nothing connects.
        self._amqp = Celery("endcontact-web", set_as_current=False).amqp
        self._origin = f"web@{socket.gethostname()}"

    def message(self, task_id: str, args: list[str], argsrepr: str, expires: datetime) -> str:
        task = self._amqp.as_task_v2(
            task_id,
            TASK_NAME,
            args=args,
            expires=expires,
            # What Celery logs and shows for the arguments: masked, never the number.
            argsrepr=argsrepr,
            kwargsrepr="{}",
            origin=self._origin,
        )
        body = json.dumps(task.body).encode()
        envelope: dict[str, Any] = {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": task.headers,
            "properties": {
                **task.properties,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": QUEUE},
                "priority": 0,
                "body_encoding": "base64",
                # Unique per message is all kombu needs of it; the task id is.
                "delivery_tag": task_id,
            },
        }
        return json.dumps(envelope)

    async def publish(self, messages: list[str]) -> None:
        # kombu's workers BRPOP from the right: LPUSH a b c delivers a first.
        if self._admission is not None:
            # One LPUSH, unless the queue is too long to do them in time (a 503 problem).
            await self._admission.push(messages)
        else:
            await self._redis.lpush(QUEUE, *messages)
