"""``ObjectStore.ping``, what readiness asks of storage: it answers when the store can be
used, raises when it cannot, and leaves nothing behind."""

import shutil
from pathlib import Path

import pytest

from chunkcast.adapters.storage.local import LocalObjectStore
from chunkcast.adapters.storage.s3 import S3ObjectStore, make_client
from chunkcast.domain.errors import Unavailable
from chunkcast.ports.storage import ObjectStore
from chunkcast.services.outages import STORAGE, failed_dependency
from chunkcast.testing import free_port
from tests.servers.seaweedfs import SeaweedServer, new_bucket_name


async def test_a_usable_store_answers_and_keeps_nothing(store: ObjectStore) -> None:
    for _ in range(3):
        await store.ping()
    if isinstance(store, LocalObjectStore):
        assert [p for p in store.root.rglob("*") if p.is_file()] == []


async def test_a_local_store_whose_folder_is_gone_fails(tmp_path: Path) -> None:
    """As when the disk under it is unmounted."""
    store = LocalObjectStore(tmp_path / "objects", b"secret", "http://127.0.0.1:8000")
    await store.ping()
    shutil.rmtree(tmp_path / "objects")
    with pytest.raises(Unavailable) as raised:
        await store.ping()
    assert raised.value.dependency == STORAGE and "/" not in raised.value.message
    assert not (tmp_path / "objects").exists()  # a check creates nothing


async def test_an_s3_store_without_its_bucket_fails(seaweedfs: SeaweedServer) -> None:
    client = make_client(seaweedfs.endpoint, seaweedfs.region,
                         access_key=seaweedfs.access_key, secret_key=seaweedfs.secret_key)
    store = S3ObjectStore(client, new_bucket_name("missing"))
    try:
        with pytest.raises(Unavailable) as raised:
            await store.ping()
        assert raised.value.dependency == STORAGE
        assert "bucket" in raised.value.message
        assert client.list_buckets()["Buckets"] is not None
        assert store.bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}
    finally:
        await store.close()


async def test_an_s3_store_whose_server_is_not_there_fails() -> None:
    client = make_client(f"http://127.0.0.1:{free_port()}", "us-east-1",
                         access_key="AKNOBODY", secret_key="nothing-listens-there")
    store = S3ObjectStore(client, "chunkcast")
    try:
        with pytest.raises(Exception) as raised:
            await store.ping()
        assert failed_dependency(raised.value) == STORAGE
    finally:
        await store.close()
