"""A content-addressed blob store: large values travel by their SHA-256, not in history.

Conversation turns pass their transcript to the turn activity by reference, so
a long conversation's history grows by each turn's text once, not by the whole
transcript every turn. Context checkpoints of runs on Temporal are kept here too,
by the same reference. The default store is a directory; every worker that runs
turn activities must reach the same one (a shared volume on a cluster).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from durable import DurableStoreError
from durable_agents.adapters.settings import StorageSettings, current

__all__ = ["BLOBS_ENV", "BlobStore", "default_blob_store"]

BLOBS_ENV = "DURABLE_BLOBS"


class BlobStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, ref: str) -> Path:
        if len(ref) != 64 or any(c not in "0123456789abcdef" for c in ref):
            raise DurableStoreError(f"{ref!r} is not a blob reference (64 hex digits)")
        return self.root / ref[:2] / ref

    def put(self, data: bytes) -> str:
        """Store ``data`` once; return its reference."""
        ref = hashlib.sha256(data).hexdigest()
        path = self._path(ref)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{ref}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return ref

    def get(self, ref: str) -> bytes:
        path = self._path(ref)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DurableStoreError(
                f"blob {ref} is not in {self.root}; every worker must share the blob store "
                f"(set {BLOBS_ENV} to a directory they all reach)"
            ) from None
        if hashlib.sha256(data).hexdigest() != ref:
            raise DurableStoreError(f"blob {ref} in {self.root} is corrupt; its content changed")
        return data

    def delete(self, ref: str) -> bool:
        """Remove the blob ``ref`` (a purge of the runs that used it); ``False`` if absent."""
        try:
            self._path(ref).unlink()
        except FileNotFoundError:
            return False
        return True


def default_blob_store() -> BlobStore:
    """The settings' store: ``DURABLE_BLOBS``, else ``blobs`` in ``DURABLE_DATA`` (``data`` in
    the working directory by default)."""
    return BlobStore(current(StorageSettings).blob_root)
