"""Pseudonymous participant ids: a keyed hash (HMAC-SHA256) of study, site and the trial's id."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from pathlib import Path

ENV_VAR = "IPDPOOL_PSEUDONYM_KEY"
MIN_KEY_BYTES = 16
LENGTH = 20  # hex digits kept (80 bits)

log = logging.getLogger(__name__)


class PseudonymKeyError(Exception):
    pass


def load_key(config: dict, base_dir: Path = Path(".")) -> bytes:
    """The HMAC key: from the environment variable if set, else from the configured file.

    The demo key file ships with the repository and is accepted only in demo mode,
    with a loud warning: pseudonyms made with a public key protect nothing.
    """
    settings = config.get("pseudonym", {})
    from_file = False
    if os.environ.get(ENV_VAR):
        key = os.environ[ENV_VAR].encode("utf-8")
    elif settings.get("key_file"):
        from_file = True
        path = Path(base_dir) / settings["key_file"]
        if not path.is_file():
            raise PseudonymKeyError(f"pseudonym key file {settings['key_file']} not found; set pseudonym.key_file or the {ENV_VAR} environment variable")
        key = path.read_bytes().strip()
    else:
        raise PseudonymKeyError(f"no pseudonym key: set the {ENV_VAR} environment variable or pseudonym.key_file in the config (a file outside the repository)")
    if len(key) < MIN_KEY_BYTES:
        raise PseudonymKeyError(f"the pseudonym key is shorter than {MIN_KEY_BYTES} bytes")
    if from_file and settings.get("demo_key", False):
        if not config.get("demo_mode", False):
            raise PseudonymKeyError("the configured key file is the public demo key; it is refused unless demo_mode is true")
        log.warning("DEMO MODE: pseudonyms use the PUBLIC demo key shipped with the repository; they protect nothing. Never use it for real data.")
    return key


def pseudonyms(key: bytes, study: str, sites, ids) -> list[str]:
    """One pseudonym per (site, id); the unit separator keeps fields from running together."""
    return [hmac.new(key, f"{study}\x1f{site}\x1f{pid}".encode("utf-8"), hashlib.sha256).hexdigest()[:LENGTH] for site, pid in zip(sites, ids)]
