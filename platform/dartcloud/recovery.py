"""Start-up cleanup after a crash or a hard stop of an earlier run of this instance."""

from __future__ import annotations

import logging

from .db import Database
from .db import functions as functions_db
from .db import invocations as invocations_db
from .db import logs as logs_db
from .engine import LABEL_INSTANCE, Engine

logger = logging.getLogger(__name__)

INTERRUPTED_BUILD = "the service stopped during the build; deploy the function again"
INTERRUPTED_INVOCATION = "the service stopped during the invocation; invoke the function again"


async def recover(db: Database, engine: Engine, instance_id: str) -> dict[str, int]:
    """Remove this instance's leftover containers and fail the work they belonged to.

    Runs before the service accepts requests, so no live call owns any of the
    containers it finds. Containers carry the `dartcloud.instance` label and
    rows an `instance_id` column, so other instances that share the Docker
    host or the database keep theirs.
    """
    containers = await engine.list_labelled({LABEL_INSTANCE: instance_id})
    for container in containers:
        await engine.remove(container["Id"])

    invocations = await invocations_db.fail_running_invocations(db, INTERRUPTED_INVOCATION,
                                                                instance_id)
    deployments = await functions_db.fail_building_deployments(db, INTERRUPTED_BUILD, instance_id)

    # The function's own logs show the failure, so its owner sees it without the operator.
    for row in invocations:
        await logs_db.insert_logs(db, row["function_id"], "error", [
            f"invocation {row['id']} failed: {INTERRUPTED_INVOCATION}"], invocation_id=row["id"])
    for row in deployments:
        await logs_db.insert_logs(db, row["function_id"], "error", [
            f"deployment {row['id']} failed: {INTERRUPTED_BUILD}"])

    counts = {"containers": len(containers), "invocations": len(invocations),
              "deployments": len(deployments)}
    if any(counts.values()):
        logger.warning("recovered from an unclean stop: removed %(containers)d containers, "
                       "failed %(invocations)d invocations and %(deployments)d builds", counts,
                       extra={"action": "recovery",
                              "invocation_ids": ",".join(str(row["id"]) for row in invocations),
                              "deployment_ids": ",".join(str(row["id"]) for row in deployments)})
    return counts
