"""File names for run ids: readable when they fit, hashed when they would not.

A run id may be any name ``check_name`` allows: up to 255 characters, any
script. Percent-encoded, such an id can grow to several times the 255 bytes a
file name may hold on common file systems. An id whose encoded name fits keeps
the readable name FileStore has always used, so existing directories stay where
they are; a longer one gets the SHA-256 of the id instead. The id itself is
always stored inside (``run.json``), never recovered from the name.
"""

from __future__ import annotations

import hashlib
from urllib.parse import quote

__all__ = ["MAX_FILE_NAME", "file_name"]

MAX_FILE_NAME = 255
"""Bytes a file name may hold on ext4, XFS, APFS and NTFS."""


def file_name(run_id: str, *, prefix: str = "", suffix: str = "") -> str:
    """``prefix + quoted id + suffix`` if it fits, else ``prefix + "=" + sha256 + suffix``."""
    readable = prefix + quote(run_id, safe="") + suffix
    if len(readable) <= MAX_FILE_NAME:
        return readable
    # Quoting leaves only letters, digits and "_.-~" and "%", so no readable name holds
    # "=": a chosen short id can never take the name of a long id's hash.
    return prefix + "=" + hashlib.sha256(run_id.encode()).hexdigest() + suffix
