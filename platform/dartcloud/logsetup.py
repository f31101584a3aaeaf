"""One-line log records, with the structured context passed in `extra` appended as key=value."""

from __future__ import annotations

import logging
import sys

# uvicorn adds color_message, a copy of the message with terminal colours.
_STANDARD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "color_message"}


class ContextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = {key: value for key, value in vars(record).items()
                   if key not in _STANDARD_ATTRIBUTES and not key.startswith("_")}
        if context:
            line += " " + " ".join(f"{key}={value}" for key, value in context.items())
        # A multi-line traceback would break the one-line-per-event rule.
        return line.replace("\n", "\\n")


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ContextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's own access log would duplicate the request log of this service.
    logging.getLogger("uvicorn.access").disabled = True
    # pgserver logs every command it runs at INFO, with their whole output.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
