"""Pseudonymous participant ids: a keyed hash (HMAC-SHA256) of study, site and the trial's id."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np

ENV_VAR = "IPDPOOL_PSEUDONYM_KEY"
MIN_KEY_BYTES = 16
LENGTH = 20  # hex digits kept (80 bits)
# The public demo key (resources/demo/DEMO_ONLY_pseudonym.key, white space stripped) is known by
# its SHA-256, so that a copy, a renamed file or the same bytes in the environment are refused too.
DEMO_KEY_SHA256 = "335096b0c0dac771849c21dd15ebfe88e3468f9b3f937ccb543d8001b9cf520d"
MIN_DISTINCT_BYTES = 8
MIN_BITS_PER_BYTE = 3.0  # Shannon entropy of the key's bytes; random hex has 4, "aaaa...ab" under 1

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
            raise PseudonymKeyError(
                f"pseudonym key file {settings['key_file']} not found; "
                f"set pseudonym.key_file or the {ENV_VAR} environment variable"
            )
        key = path.read_bytes().strip()
    else:
        raise PseudonymKeyError(
            f"no pseudonym key: set the {ENV_VAR} environment variable "
            "or pseudonym.key_file in the config (a file outside the repository)"
        )
    weak = weakness(key)
    if weak:
        raise PseudonymKeyError(
            f"the pseudonym key is too weak ({weak}); use at least {MIN_KEY_BYTES} random bytes, "
            "e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`"
        )
    demo = is_demo_key(key) or (from_file and settings.get("demo_key", False))
    if demo and not config.get("demo_mode", False):
        raise PseudonymKeyError(
            "the pseudonym key is the public demo key (recognised by its bytes, whatever file or variable holds it); "
            "it is refused unless demo_mode is true"
        )
    if demo:
        log.warning(
            "DEMO MODE: pseudonyms use the PUBLIC demo key shipped with the repository; they protect nothing. "
            "Never use it for real data."
        )
    return key


def is_demo_key(key: bytes) -> bool:
    return hashlib.sha256(key.strip()).hexdigest() == DEMO_KEY_SHA256


def weakness(key: bytes) -> str | None:
    """Why a key is too weak to keep pseudonyms secret, or None: too short, too few distinct bytes, low entropy."""
    if len(key) < MIN_KEY_BYTES:
        return f"shorter than {MIN_KEY_BYTES} bytes"
    counts = Counter(key)
    if len(counts) < MIN_DISTINCT_BYTES:
        return f"fewer than {MIN_DISTINCT_BYTES} distinct bytes"
    bits = -sum(n / len(key) * math.log2(n / len(key)) for n in counts.values())
    if bits < MIN_BITS_PER_BYTE:
        return f"{bits:.1f} bits of entropy per byte, fewer than {MIN_BITS_PER_BYTE}"
    return None


def pseudonyms(key: bytes, study: str, sites, ids) -> list[str]:
    """One pseudonym per (site, id), computed once per distinct pair; the unit separator keeps fields from
    running together. The HMAC is keyed and fed the study once, and each pair continues a copy of it: the
    same digest as hashing the whole message, without repeating the key schedule per participant."""
    keyed = hmac.new(key, f"{study}\x1f".encode(), hashlib.sha256)

    def one(site, pid) -> str:
        mac = keyed.copy()
        mac.update(f"{site}\x1f{pid}".encode())
        return mac.hexdigest()[:LENGTH]

    # Through numpy: iterating a pandas Arrow-backed string column costs microseconds per element.
    pairs = list(zip(np.asarray(sites, dtype=object), np.asarray(ids, dtype=object)))
    unique = {pair: one(*pair) for pair in dict.fromkeys(pairs)}
    return [unique[pair] for pair in pairs]
