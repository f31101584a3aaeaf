"""Background tasks that the service must finish or cancel before it stops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine

logger = logging.getLogger(__name__)


class TaskSet:
    """Keeps a reference to every background task and logs the ones that fail.

    asyncio keeps only weak references to tasks, so a task without another
    reference can be garbage collected before it finishes.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coroutine: Coroutine, *, name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("background task %s failed", task.get_name(),
                         exc_info=task.exception(), extra={"action": "task.failed"})

    async def drain(self, grace: float, cancel_timeout: float = 30.0) -> None:
        """Wait up to `grace` seconds for the tasks, then cancel the rest and wait for them.

        Waiting after the cancel matters: a cancelled task still runs its
        cleanup, which needs the database and the engine to be open.
        """
        if self._tasks and grace > 0:
            await asyncio.wait(set(self._tasks), timeout=grace)
        for task in set(self._tasks):
            task.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=cancel_timeout)
            for task in pending:
                logger.error("background task %s did not stop within %g s", task.get_name(),
                             cancel_timeout, extra={"action": "task.stuck"})
