"""The Docker engine behind a small set of async verbs.

Every docker SDK call blocks, so each verb runs it in this engine's own thread
pool and the event loop never waits on the engine. The pool is sized from the
concurrency limits, because an invocation holds one thread while it reads its
container's output.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import logging
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar

import docker
import docker.errors
import requests
from docker.types import LogConfig, Ulimit
from docker.utils import kwargs_from_env
from docker.utils.socket import STDERR, STDOUT, frames_iter

from .errors import EngineError

logger = logging.getLogger(__name__)

T = TypeVar("T")

LABEL_INSTANCE = "dartcloud.instance"
LABEL_FUNCTION = "dartcloud.function_id"
LABEL_DEPLOYMENT = "dartcloud.deployment_id"
LABEL_INVOCATION = "dartcloud.invocation_id"
LABEL_BUILD = "dartcloud.build"


@dataclasses.dataclass
class ContainerLimits:
    """Resource and isolation settings applied to every function container."""

    memory_bytes: int
    nano_cpus: int
    pids: int
    tmpfs_bytes: int
    nofile: int
    network: str = "none"
    user: str = "65534:65534"


@dataclasses.dataclass
class Output:
    """Output of a container, kept up to a cap per stream."""

    stdout: bytes
    stderr: bytes
    stdout_bytes: int
    stderr_bytes: int

    @property
    def stdout_truncated(self) -> bool:
        return self.stdout_bytes > len(self.stdout)

    @property
    def stderr_truncated(self) -> bool:
        return self.stderr_bytes > len(self.stderr)


@dataclasses.dataclass
class BuildResult:
    image_id: str | None
    error: str | None


class Engine:
    """Verbs: `ping`, `image_exists`, `build`, `create`, `attach`, `start`,
    `collect`, `wait`, `oom_killed`, `kill`, `remove`, `list_labelled`,
    `remove_images`, `prune_build_images`.

    Engine failures surface as `EngineError`; a missing container on `kill`
    or `remove` is not an error, because the goal state is already reached.
    """

    def __init__(self, threads: int = 64, timeout: float = 120.0) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="docker")
        try:
            # The client asks the engine for its API version here, so callers
            # on an event loop make the engine in a worker thread.
            self.api = docker.APIClient(timeout=timeout, max_pool_size=threads, **kwargs_from_env())
        except docker.errors.DockerException as error:
            self._executor.shutdown(wait=False)
            raise EngineError(f"the Docker engine did not respond ({error}); start it, or point "
                              "DOCKER_HOST at it") from error

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.api.close()

    async def _call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        call = functools.partial(function, *args, **kwargs)
        try:
            return await loop.run_in_executor(self._executor, call)
        except docker.errors.DockerException as error:
            raise EngineError(f"the Docker engine failed: {error}") from error
        except requests.exceptions.RequestException as error:
            # docker-py lets connection failures through as requests' own errors.
            raise EngineError(f"the Docker engine did not respond: {error}") from error

    async def ping(self) -> None:
        await self._call(self.api.ping)

    async def network_exists(self, name: str) -> bool:
        return await self._exists(self.api.inspect_network, name)

    async def image_exists(self, reference: str) -> bool:
        return await self._exists(self.api.inspect_image, reference)

    async def _exists(self, inspect: Callable[[str], Any], name: str) -> bool:
        try:
            await self._call(inspect, name)
        except EngineError as error:
            if isinstance(error.__cause__, docker.errors.NotFound):
                return False
            raise
        return True

    # -- builds ---------------------------------------------------------------

    async def build(self, context: BinaryIO, *, tag: str, buildargs: dict[str, str],
                    labels: dict[str, str], on_line: Callable[[str], None],
                    timeout: float) -> BuildResult:
        """Build an image from an uncompressed tar `context`, passing each output line to `on_line`.

        Never pulls: the caller checks that the base image is local first,
        because the classic builder pulls a missing `FROM` image by itself.
        `timeout` bounds the wait for each piece of output, and a compile
        step can be silent for minutes.
        """
        return await self._call(self._build, context, tag, buildargs, labels, on_line, timeout)

    def _build(self, context: BinaryIO, tag: str, buildargs: dict[str, str],
               labels: dict[str, str], on_line: Callable[[str], None],
               timeout: float) -> BuildResult:
        # nocache: a build that reused another build's intermediate images
        # could fail with "failed to get digest" when that build's cleanup
        # removed them in between. Every step after the per-build LABEL of the
        # template would miss the cache anyway.
        stream = self.api.build(
            fileobj=context, custom_context=True, tag=tag, buildargs=buildargs, labels=labels,
            pull=False, rm=True, forcerm=True, nocache=True, decode=True, timeout=timeout,
        )
        image_id = None
        partial = ""
        for chunk in stream:
            if "error" in chunk:
                if partial:
                    on_line(partial)
                return BuildResult(image_id=None, error=str(chunk["error"]).strip())

            if "aux" in chunk and isinstance(chunk["aux"], dict):
                image_id = chunk["aux"].get("ID", image_id)

            text = partial + str(chunk.get("stream", ""))
            *lines, partial = text.split("\n")
            for line in lines:
                on_line(line.rstrip("\r"))

        if partial:
            on_line(partial)
        if image_id is None:
            image_id = self.api.inspect_image(tag)["Id"]
        return BuildResult(image_id=image_id, error=None)

    async def kill_build(self, deployment_id: str) -> int:
        """Kill the containers of a build's RUN steps; return how many were found."""
        containers = await self.list_labelled({LABEL_BUILD: deployment_id}, all_states=False)
        for container in containers:
            await self.kill(container["Id"])
        return len(containers)

    async def remove_build_images(self, deployment_id: str) -> int:
        """Remove the untagged first-stage images a multi-stage build leaves behind."""
        # Not the prune endpoint: the engine runs one prune at a time and
        # returns 409 to a second one, which concurrent builds would hit.
        return await self.remove_images({LABEL_BUILD: deployment_id}, dangling=True)

    async def remove_images(self, labels: dict[str, str], dangling: bool = False) -> int:
        """Remove every image carrying all `labels`, even if tagged several times."""
        filters: dict[str, Any] = {"label": [f"{key}={value}" for key, value in labels.items()]}
        if dangling:
            filters["dangling"] = True
        images = await self._call(self.api.images, filters=filters, quiet=True)
        for image_id in images:
            try:
                await self._call(self.api.remove_image, image_id, force=True)
            except EngineError as error:
                # 404: removed meanwhile; 409: a running container or a child image still uses it.
                if not isinstance(error.__cause__, docker.errors.APIError) or \
                        error.__cause__.status_code not in (404, 409):
                    raise
        return len(images)

    # -- containers -----------------------------------------------------------

    async def create(self, image: str, *, name: str, environment: dict[str, str],
                     labels: dict[str, str], limits: ContainerLimits) -> str:
        """Create a container with every isolation setting of the container contract."""
        return await self._call(self._create, image, name, environment, labels, limits)

    def _create(self, image: str, name: str, environment: dict[str, str], labels: dict[str, str],
                limits: ContainerLimits) -> str:
        host_config = self.api.create_host_config(
            mem_limit=limits.memory_bytes,
            # Equal to the memory limit, so the container gets no swap.
            memswap_limit=limits.memory_bytes,
            nano_cpus=limits.nano_cpus,
            pids_limit=limits.pids,
            network_mode=limits.network,
            read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={limits.tmpfs_bytes}"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            ulimits=[Ulimit(name="nofile", soft=limits.nofile, hard=limits.nofile)],
            init=True,
            # Output travels over the attach stream, so the engine keeps no log file.
            log_config=LogConfig(type=LogConfig.types.NONE),
        )
        container = self.api.create_container(
            image,
            name=name,
            environment=environment,
            labels=labels,
            user=limits.user,
            host_config=host_config,
            network_disabled=limits.network == "none",
            stdin_open=False,
            tty=False,
        )
        return container["Id"]

    async def attach(self, container_id: str) -> Any:
        """Attach to stdout and stderr; do it before `start` so no output is missed."""
        return await self._call(
            self.api.attach_socket, container_id,
            params={"stdout": 1, "stderr": 1, "stream": 1, "logs": 0})

    async def start(self, container_id: str) -> None:
        await self._call(self.api.start, container_id)

    async def collect(self, socket: Any, cap: int) -> Output:
        """Read an attach socket to its end, keeping at most `cap` bytes of each stream.

        Output past the cap is read and dropped rather than left unread, so a
        chatty function never blocks on a full pipe.
        """
        return await self._call(_collect, socket, cap)

    def detach(self, socket: Any) -> None:
        """Close an attach socket without reading it, for a container that never started."""
        _close_socket(socket)

    async def wait(self, container_id: str) -> int:
        result = await self._call(self.api.wait, container_id)
        return int(result.get("StatusCode", -1))

    async def oom_killed(self, container_id: str) -> bool:
        state = (await self._call(self.api.inspect_container, container_id))["State"]
        return bool(state.get("OOMKilled"))

    async def kill(self, container_id: str) -> None:
        try:
            await self._call(self.api.kill, container_id)
        except EngineError as error:
            # Already gone or already stopped: the goal state is reached.
            if not isinstance(error.__cause__, docker.errors.APIError) or \
                    error.__cause__.status_code not in (404, 409):
                raise

    async def remove(self, container_id: str) -> None:
        try:
            await self._call(self.api.remove_container, container_id, force=True)
        except EngineError as error:
            if not isinstance(error.__cause__, docker.errors.NotFound):
                raise

    async def list_labelled(self, labels: dict[str, str],
                            all_states: bool = True) -> list[dict[str, Any]]:
        """List containers carrying every label in `labels` (an empty value matches any value)."""
        filters = [f"{key}={value}" if value else key for key, value in labels.items()]
        return await self._call(self.api.containers, all=all_states, filters={"label": filters})


def _collect(socket: Any, cap: int) -> Output:
    retained = {STDOUT: bytearray(), STDERR: bytearray()}
    counted = {STDOUT: 0, STDERR: 0}
    try:
        for stream, data in frames_iter(socket, tty=False):
            if stream not in retained:
                continue
            counted[stream] += len(data)
            room = cap - len(retained[stream])
            if room > 0:
                retained[stream] += data[:room]
    finally:
        _close_socket(socket)
    return Output(stdout=bytes(retained[STDOUT]), stderr=bytes(retained[STDERR]),
                  stdout_bytes=counted[STDOUT], stderr_bytes=counted[STDERR])


def _close_socket(socket: Any) -> None:
    response = getattr(socket, "_response", None)
    for closable in (response, socket, getattr(socket, "_sock", None)):
        if closable is None:
            continue
        try:
            closable.close()
        except (OSError, ValueError):
            # ValueError: http.client flushes a file the socket close already closed.
            pass
