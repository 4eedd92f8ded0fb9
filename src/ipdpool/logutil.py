"""Logging for workflow steps: everything, including the cause of a failure, goes to the rule's log."""

from __future__ import annotations

import contextlib
import logging


@contextlib.contextmanager
def logged_to(path: str, name: str = "ipdpool"):
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    log = logging.getLogger(name)
    try:
        yield log
    except Exception as error:
        # The last line of a failed job's log names the cause.
        log.exception("failed: %s", error)
        raise
    finally:
        root.removeHandler(handler)
        handler.close()
