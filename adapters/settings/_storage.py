"""Where a worker keeps files: the data directory, the local store and the blob store.

Relative paths, and the default ``data`` directory, resolve against the working
directory when the settings are read, never against where the package is installed.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from ._env import EnvGroup

__all__ = ["StorageSettings"]


class StorageSettings(EnvGroup):
    """The data directory and what lives in it unless set apart."""

    data: Path = Field(default=Path("data"), validation_alias="DURABLE_DATA")
    """The embedded server's database and log, the local store and the blobs: ``data`` in the
    working directory by default."""
    store: Path | None = Field(default=None, validation_alias="DURABLE_STORE")
    """The local SQLite store (``--local``); unset: ``durable.db`` in the data directory."""
    blobs: Path | None = Field(default=None, validation_alias="DURABLE_BLOBS")
    """Conversation transcripts and Temporal runs' checkpoints, shared by every worker;
    unset: ``blobs`` in the data directory."""

    @field_validator("data", "store", "blobs")
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        return None if path is None else path.expanduser().absolute()

    @model_validator(mode="after")
    def _usable(self) -> StorageSettings:
        for name, path in (("DURABLE_DATA", self.data), ("DURABLE_BLOBS", self.blobs)):
            if path is not None and path.exists() and not path.is_dir():
                raise ValueError(
                    f"{name}={path} is a file, not a directory; name a directory "
                    "(it is created if missing) or unset it for the default"
                )
        if self.store is not None and self.store.is_dir():
            raise ValueError(
                f"DURABLE_STORE={self.store} is a directory; name the database file "
                "(such as durable.db in it), or unset it for durable.db in DURABLE_DATA"
            )
        return self

    @property
    def local_store(self) -> Path:
        return self.store or self.data / "durable.db"

    @property
    def blob_root(self) -> Path:
        return self.blobs or self.data / "blobs"
