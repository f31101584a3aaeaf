"""Running one invocation: a fresh, limited container per call, recorded in the database."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import uuid
from collections import Counter

import asyncpg
import docker.errors

from .config import MIB, Settings
from .db import Database
from .db import invocations as invocations_db
from .db import logs as logs_db
from .engine import (
    LABEL_FUNCTION,
    LABEL_INSTANCE,
    LABEL_INVOCATION,
    ContainerLimits,
    Engine,
    Output,
)
from .errors import DartCloudError, EngineError, TooManyRequests
from .tasks import TaskSet

logger = logging.getLogger(__name__)

# Exit status of a process killed by SIGKILL (128 + 9), as the OOM killer and `docker kill` do.
EXIT_SIGKILL = 137
STDERR_LINES_IN_ERROR = 5
DELETED_DURING_CALL = "the function was deleted while this invocation was running"


class FunctionDeleted(DartCloudError):
    status_code = 410
    code = "function_deleted"


@dataclasses.dataclass
class Target:
    """The deployment an invocation runs."""

    function_id: uuid.UUID
    deployment_id: uuid.UUID
    image: str


class Invoker:
    """Runs invocations within the concurrency limits and stops them on demand."""

    def __init__(self, db: Database, engine: Engine, settings: Settings, cleanup: TaskSet) -> None:
        self._db = db
        self._engine = engine
        self._settings = settings
        self._cleanup = cleanup
        self._limits = ContainerLimits(
            memory_bytes=settings.function_memory_mb * MIB,
            nano_cpus=int(settings.function_cpus * 1e9),
            pids=settings.function_pids,
            tmpfs_bytes=settings.function_tmpfs_mb * MIB,
            nofile=settings.function_nofile,
            network=settings.function_network,
        )
        self._running: Counter[uuid.UUID] = Counter()
        self._containers: dict[uuid.UUID, set[str]] = {}
        self._deleted: set[uuid.UUID] = set()

    @property
    def running(self) -> int:
        return sum(self._running.values())

    async def invoke(self, target: Target, body: str) -> dict:
        """Run the target once with `body` in FUNCTION_INPUT and return the result document.

        Raises `TooManyRequests` when a concurrency limit is reached.
        """
        self._reserve(target.function_id)
        try:
            return await self._invoke(target, body)
        finally:
            self._running[target.function_id] -= 1
            if self._running[target.function_id] <= 0:
                del self._running[target.function_id]
                self._deleted.discard(target.function_id)

    def _reserve(self, function_id: uuid.UUID) -> None:
        # NOTE: the counts live in this process, so services that share a
        # database each allow the full limits.
        retry = {"Retry-After": "1"}
        if self.running >= self._settings.max_concurrent_invocations:
            raise TooManyRequests(
                f"the platform is running its maximum of {self._settings.max_concurrent_invocations} "
                "invocations (MAX_CONCURRENT_INVOCATIONS); retry shortly", headers=retry)
        if self._running[function_id] >= self._settings.max_concurrent_per_function:
            raise TooManyRequests(
                f"this function is running its maximum of "
                f"{self._settings.max_concurrent_per_function} invocations "
                "(MAX_CONCURRENT_PER_FUNCTION); retry shortly", headers=retry)
        self._running[function_id] += 1

    async def _invoke(self, target: Target, body: str) -> dict:
        invocation_id = uuid.uuid4()
        labels = {LABEL_INSTANCE: self._settings.instance_id,
                  LABEL_FUNCTION: str(target.function_id),
                  LABEL_INVOCATION: str(invocation_id)}

        # The row and the container do not depend on each other, so both are made at once.
        insert = asyncio.ensure_future(invocations_db.insert_invocation(
            self._db, invocation_id, target.function_id, target.deployment_id,
            self._settings.instance_id))
        create = asyncio.ensure_future(self._engine.create(
            target.image, name=f"dartcloud-{invocation_id}", environment={"FUNCTION_INPUT": body},
            labels=labels, limits=self._limits))
        phases = _PhaseTimer()
        await asyncio.wait({insert, create})
        phases.mark("create")
        container_id = create.result() if not create.exception() else None

        if container_id is not None:
            self._containers.setdefault(target.function_id, set()).add(container_id)
        try:
            insert.result()
            if container_id is None:
                create.result()
            result = await self._run(target, invocation_id, container_id, phases)
            logger.debug("invocation phases", extra={"action": "invoke.phases",
                                                     "invocation_id": str(invocation_id),
                                                     **phases.milliseconds()})
            return result
        except FunctionDeleted:
            raise
        except Exception as error:
            if not insert.exception():
                await self._fail(invocation_id, error)
            raise
        finally:
            if container_id is not None:
                self._containers.get(target.function_id, set()).discard(container_id)
                # Removal does not delay the response, and shutdown waits for it.
                self._cleanup.spawn(self._remove(container_id), name=f"remove-{container_id[:12]}")

    async def _run(self, target: Target, invocation_id: uuid.UUID, container_id: str,
                   phases: _PhaseTimer) -> dict:
        socket = await self._engine.attach(container_id)
        phases.mark("attach")
        started = time.perf_counter()
        try:
            await self._engine.start(container_id)
        except BaseException:
            self._engine.detach(socket)
            raise
        phases.mark("start")
        if target.function_id in self._deleted:
            await self._engine.kill(container_id)

        collect = asyncio.ensure_future(self._engine.collect(socket, self._settings.function_output_bytes))
        # Waiting from the start, as `docker run` does, has the engine report the exit
        # as it happens rather than on a request made after the output ends.
        exited = asyncio.ensure_future(self._engine.wait(container_id))
        try:
            done, _ = await asyncio.wait({collect}, timeout=self._settings.function_timeout)
            timed_out = not done
            if timed_out:
                # The SDK's wait(timeout=...) only bounds the HTTP read; the container must be killed.
                await self._engine.kill(container_id)
            output = await collect
        except BaseException:
            # The wait ends when the container is removed; its outcome no longer matters.
            exited.add_done_callback(_discard_outcome)
            raise
        phases.mark("run")
        exit_code = await exited
        phases.mark("wait")
        duration_ms = round((time.perf_counter() - started) * 1000)

        if target.function_id in self._deleted:
            logger.info("invocation %s stopped because its function was deleted", invocation_id,
                        extra={"action": "invoke.deleted", "function_id": str(target.function_id)})
            raise FunctionDeleted(DELETED_DURING_CALL)

        oom = exit_code == EXIT_SIGKILL and not timed_out and \
            await self._engine.oom_killed(container_id)
        result = self._describe(invocation_id, exit_code, duration_ms, output, timed_out, oom)
        await self._record(target, invocation_id, result, output)
        phases.mark("record")
        return result

    def _describe(self, invocation_id: uuid.UUID, exit_code: int, duration_ms: int, output: Output,
                  timed_out: bool, oom: bool) -> dict:
        stdout = output.stdout.decode("utf-8", errors="replace")
        if timed_out:
            status = "timeout"
            error = (f"the function ran past its time limit of {self._settings.function_timeout:g} s "
                     "(FUNCTION_TIMEOUT) and was killed")
        elif oom:
            status = "error"
            error = (f"the function hit its memory limit of {self._settings.function_memory_mb} MiB "
                     "(FUNCTION_MEMORY_MB) and was killed")
        elif exit_code != 0:
            status = "error"
            tail = _last_lines(output.stderr, STDERR_LINES_IN_ERROR)
            error = f"the function exited with code {exit_code}" + (f": {tail}" if tail else "")
        else:
            status, error = "success", None

        return {
            "invocation_id": str(invocation_id),
            "status": status,
            "exit_code": None if timed_out else exit_code,
            "duration_ms": duration_ms,
            "result": _parse_result(stdout),
            "stdout_truncated": output.stdout_truncated,
            "error": error,
        }

    async def _record(self, target: Target, invocation_id: uuid.UUID, result: dict,
                      output: Output) -> None:
        stderr_lines = _stored_stderr(output, self._settings.function_log_lines)
        ending = "killed" if result["exit_code"] is None else f"exit code {result['exit_code']}"
        summary = (f"invocation {invocation_id} finished: {result['status']} in "
                   f"{result['duration_ms']} ms ({ending})")
        if result["error"]:
            summary += ": " + " | ".join(result["error"].splitlines())
        logger.info("%s", summary, extra={"action": "invoke.finished",
                                          "function_id": str(target.function_id)})

        stdout = output.stdout.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
        try:
            await asyncio.gather(
                invocations_db.finish_invocation(
                    self._db, invocation_id, status=result["status"],
                    exit_code=result["exit_code"], duration_ms=result["duration_ms"],
                    error=result["error"], output=stdout, stdout_bytes=output.stdout_bytes,
                    stderr_bytes=output.stderr_bytes),
                logs_db.insert_log_rows(self._db, target.function_id, invocation_id,
                                        [("stderr", line) for line in stderr_lines]
                                        + [("info", summary)]),
            )
        except asyncpg.ForeignKeyViolationError:
            raise FunctionDeleted(DELETED_DURING_CALL) from None

    async def _fail(self, invocation_id: uuid.UUID, error: Exception) -> None:
        # The error handler of the HTTP layer logs the error itself.
        message = getattr(error, "message", None) or str(error) or type(error).__name__
        try:
            await invocations_db.finish_invocation(
                self._db, invocation_id, status="error", exit_code=None, duration_ms=0,
                error=f"platform error: {message}", output=None, stdout_bytes=0, stderr_bytes=0)
        except (OSError, asyncpg.PostgresError) as record_error:
            logger.error("could not record the failure of invocation %s: %s", invocation_id,
                         record_error, extra={"action": "invoke.record_failed"})

    async def _remove(self, container_id: str) -> None:
        started = time.perf_counter()
        try:
            await self._engine.remove(container_id)
            logger.debug("container removed", extra={
                "action": "invoke.removed", "remove_ms": _elapsed_ms(started)})
        except DartCloudError as error:
            logger.error("could not remove container %s: %s; the next start removes it",
                         container_id[:12], error.message,
                         extra={"action": "invoke.remove_failed", "container": container_id})

    async def stop_function(self, function_id: uuid.UUID) -> int:
        """Kill the running containers of a deleted function and wait until they exit.

        Returns how many there were. Containers created after the list was
        taken are killed by `_run` itself.
        """
        self._deleted.add(function_id)
        containers = list(self._containers.get(function_id, ()))
        await asyncio.gather(*(self._kill_and_wait(container_id) for container_id in containers))
        return len(containers)

    async def _kill_and_wait(self, container_id: str) -> None:
        await self._engine.kill(container_id)
        try:
            await self._engine.wait(container_id)
        except EngineError as error:
            # Not found: its own invocation removed it already, which is just as good.
            if not isinstance(error.__cause__, docker.errors.NotFound):
                logger.warning("could not wait for killed container %s: %s", container_id[:12],
                               error.message, extra={"action": "invoke.stop_failed",
                                                     "container": container_id})


class _PhaseTimer:
    """Wall-clock time of each step of an invocation, logged at DEBUG for the benchmark."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self._phases: dict[str, float] = {}

    def mark(self, phase: str) -> None:
        now = time.perf_counter()
        self._phases[phase] = now - self._last
        self._last = now

    def milliseconds(self) -> dict[str, float]:
        return {f"{phase}_ms": round(seconds * 1000, 2) for phase, seconds in self._phases.items()}


def _stored_stderr(output: Output, cap: int) -> list[str]:
    """Select the first and the last lines of stderr, at most `cap` in all, plus a marker.

    The tail is kept because a crash usually reports itself last.
    """
    lines = output.stderr.decode("utf-8", errors="replace").splitlines()
    if output.stderr_truncated:
        lines.append(f"[stderr truncated: only the first {len(output.stderr)} of "
                     f"{output.stderr_bytes} bytes were kept (FUNCTION_OUTPUT_BYTES)]")
    if len(lines) <= cap:
        return lines

    head = cap // 2
    tail = cap - head
    marker = (f"[stderr truncated: {len(lines) - cap} of {len(lines)} lines omitted here; "
              f"FUNCTION_LOG_LINES stores {cap} per invocation]")
    return lines[:head] + [marker] + lines[-tail:]


def _discard_outcome(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _parse_result(stdout: str) -> object:
    text = stdout.strip()
    if not text:
        return stdout
    try:
        return json.loads(text)
    except ValueError:
        return stdout


def _last_lines(data: bytes, count: int) -> str:
    lines = [line for line in data.decode("utf-8", errors="replace").splitlines() if line.strip()]
    return "\n".join(lines[-count:])
