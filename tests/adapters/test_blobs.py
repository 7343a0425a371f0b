"""The blob store conversation turns pass transcripts through."""

from __future__ import annotations

from pathlib import Path

import pytest

from durable import DurableStoreError
from durable_agents.adapters.blobs import BlobStore


def test_a_blob_is_stored_once_under_its_hash(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    ref = blobs.put(b"transcript")

    assert blobs.put(b"transcript") == ref
    assert blobs.get(ref) == b"transcript"
    assert len(list(tmp_path.rglob("*"))) == 2  # one folder, one file


def test_a_reference_that_is_not_a_hash_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DurableStoreError, match="not a blob reference"):
        BlobStore(tmp_path).get("../../etc/passwd")


def test_a_missing_blob_names_the_shared_store_setting(tmp_path: Path) -> None:
    with pytest.raises(DurableStoreError, match="set DURABLE_BLOBS"):
        BlobStore(tmp_path).get("0" * 64)


def test_a_blob_whose_content_changed_is_refused(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    ref = blobs.put(b"transcript")
    (tmp_path / ref[:2] / ref).write_bytes(b"tampered")

    with pytest.raises(DurableStoreError, match="is corrupt"):
        blobs.get(ref)
