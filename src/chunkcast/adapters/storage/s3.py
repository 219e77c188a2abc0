"""Object store on any S3 API (AWS, MinIO, R2, SeaweedFS) through boto3.

boto3 blocks, so every call that talks to the server runs in a worker thread; pre-signing is
a local HMAC computation and stays synchronous. Every object carries the Content-Type and
Cache-Control of its key, so a CDN pointed at the bucket serves it as the API would.

The bucket is created on first use rather than in :func:`open_store`, which is synchronous
and must not block: every server call checks it once (``ensure_bucket``, also public so a
process can do it at start-up, before it hands out pre-signed URLs into a new bucket).
"""

import math
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import parse_qs, urlsplit

import anyio
import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from chunkcast.config import Settings
from chunkcast.domain import keys
from chunkcast.domain.errors import InvalidInput, Unavailable
from chunkcast.domain.media_types import cache_control_for, content_type_for
from chunkcast.ports.storage import (
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    MultipartUpload,
    ObjectInfo,
    PresignedRequest,
    UploadPart,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.literals import BucketLocationConstraintType

MiB = 1024 * 1024
DEFAULT_MULTIPART_THRESHOLD = 100 * MiB
MAX_EXPIRES_S = 7 * 24 * 3600  # the longest a SigV4 pre-signed URL may live
DELETE_BATCH = 1000  # DeleteObjects takes at most this many keys
# Answers to CompleteMultipartUpload that mean the client sent wrong parts, not a server fault.
_BAD_PARTS = {"InvalidPart", "InvalidPartOrder", "EntityTooSmall", "NoSuchUpload",
              "MalformedXML", "InvalidRequest"}


class S3ObjectStore:
    """Objects of one bucket, keyed exactly as :mod:`chunkcast.domain.keys` builds them."""

    def __init__(self, client: "S3Client", bucket: str, *,
                 multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD) -> None:
        self._client = client
        self.bucket = bucket
        self._threshold = multipart_threshold
        # put_file of files up to the threshold is one PUT; larger ones go in parts.
        self._transfer = TransferConfig(multipart_threshold=multipart_threshold,
                                        multipart_chunksize=max(MIN_PART_SIZE, 16 * MiB))
        self._bucket_ready = False
        self._bucket_lock = threading.Lock()

    @property
    def multipart(self) -> "S3ObjectStore":
        return self

    @property
    def multipart_threshold(self) -> int:
        return self._threshold

    async def ensure_ready(self) -> None:
        await self.ensure_bucket()

    async def ensure_bucket(self) -> None:
        """Create the bucket unless it exists (safe to call any number of times)."""
        await anyio.to_thread.run_sync(self._ensure_bucket)

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        with self._bucket_lock:
            if self._bucket_ready:
                return
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _status(exc) == 404:
                    self._create_bucket()
                elif _status(exc) != 403:  # 403: it exists, but we may not list it
                    raise
            self._bucket_ready = True

    async def ping(self) -> None:
        await anyio.to_thread.run_sync(self._ping)

    def _ping(self) -> None:
        """HeadBucket: the server answers and the bucket is there (403: it is, but these
        keys may not list it, as in :meth:`_ensure_bucket`)."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _status(exc) == 404:
                raise Unavailable("the bucket does not exist", dependency="storage") from exc
            if _status(exc) != 403:
                raise

    def _create_bucket(self) -> None:
        region = self._client.meta.region_name
        try:
            if region in (None, "", "us-east-1"):
                self._client.create_bucket(Bucket=self.bucket)
            else:
                self._client.create_bucket(
                    Bucket=self.bucket,
                    CreateBucketConfiguration={
                        "LocationConstraint": cast("BucketLocationConstraintType", region)},
                )
        except ClientError as exc:  # another process won the race
            if _code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    async def put_file(self, key: str, path: Path) -> None:
        keys.check_key(key)
        await anyio.to_thread.run_sync(self._put_file, key, path)

    def _put_file(self, key: str, path: Path) -> None:
        if not path.is_file():  # boto3 would report a directory or a missing file obscurely
            raise (IsADirectoryError if path.is_dir() else FileNotFoundError)(str(path))
        self._ensure_bucket()
        self._client.upload_file(str(path), self.bucket, key, Config=self._transfer,
                                 ExtraArgs={"ContentType": content_type_for(key),
                                            "CacheControl": cache_control_for(key)})

    async def put_bytes(self, key: str, data: bytes) -> None:
        keys.check_key(key)
        await anyio.to_thread.run_sync(self._put_bytes, key, data)

    def _put_bytes(self, key: str, data: bytes) -> None:
        self._ensure_bucket()
        self._client.put_object(Bucket=self.bucket, Key=key, Body=data,
                                ContentType=content_type_for(key),
                                CacheControl=cache_control_for(key))

    async def stat(self, key: str) -> ObjectInfo | None:
        keys.check_key(key)
        return await anyio.to_thread.run_sync(self._stat, key)

    def _stat(self, key: str) -> ObjectInfo | None:
        self._ensure_bucket()
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _status(exc) == 404:
                return None
            raise
        return ObjectInfo(key, head["ContentLength"])

    async def read_bytes(self, key: str) -> bytes:
        keys.check_key(key)
        return await anyio.to_thread.run_sync(self._read_bytes, key)

    def _read_bytes(self, key: str) -> bytes:
        self._ensure_bucket()
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError as exc:
            if _status(exc) == 404:  # as the local store does for a missing file
                raise FileNotFoundError(key) from exc
            raise
        with body:
            return body.read()

    async def input_url(self, key: str, expires_s: int = 3600) -> str:
        # A pre-signed GET signs only the host, so ffmpeg and PyAV can add Range headers.
        return self.presign_get(key, expires_s)

    def presign_put(self, key: str, expires_s: int) -> PresignedRequest:
        """The signature covers Content-Type and Cache-Control, so the client must send
        exactly ``headers``: the object then carries the policy of its key."""
        keys.check_key(key)
        expires_at = _expires_at(expires_s)
        headers = {"Content-Type": content_type_for(key), "Cache-Control": cache_control_for(key)}
        url = self._client.generate_presigned_url(
            "put_object", ExpiresIn=expires_s,
            Params={"Bucket": self.bucket, "Key": key, "ContentType": headers["Content-Type"],
                    "CacheControl": headers["Cache-Control"]},
        )
        return PresignedRequest(url=url, method="PUT", headers=headers, expires_at=expires_at)

    def presign_get(self, key: str, expires_s: int) -> str:
        keys.check_key(key)
        _expires_at(expires_s)
        return self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s)

    async def delete_prefix(self, prefix: str) -> int:
        keys.check_key(prefix.rstrip("/"))  # never an empty prefix: that is the whole bucket
        return await anyio.to_thread.run_sync(self._delete_prefix, prefix)

    def _delete_prefix(self, prefix: str) -> int:
        self._ensure_bucket()
        # List everything first: deleting while paging moves the pages on some servers.
        found = [item["Key"]
                 for page in self._client.get_paginator("list_objects_v2").paginate(
                     Bucket=self.bucket, Prefix=prefix)
                 for item in page.get("Contents", [])]
        for start in range(0, len(found), DELETE_BATCH):
            batch = found[start:start + DELETE_BATCH]
            answer = self._client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": key} for key in batch], "Quiet": True})
            if errors := answer.get("Errors"):
                raise OSError(f"could not delete {len(errors)} objects under {prefix!r}: "
                              f"{errors[0].get('Code')} {errors[0].get('Message')}")
        # Unfinished multipart uploads hold storage too (an upload abandoned mid-way).
        for page in self._client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=prefix):
            for upload in page.get("Uploads", []):
                self._abort(upload["Key"], upload["UploadId"])
        return len(found)

    async def start_multipart(
        self, key: str, size: int, part_size: int, expires_s: int
    ) -> MultipartUpload:
        keys.check_key(key)
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise InvalidInput(f"part size must be between {MIN_PART_SIZE} and "
                               f"{MAX_PART_SIZE} bytes")
        count = math.ceil(size / part_size)
        if not 1 <= count <= MAX_PARTS:
            raise InvalidInput(f"an upload in parts has 1 to {MAX_PARTS} parts, not {count}")
        _expires_at(expires_s)
        return await anyio.to_thread.run_sync(self._start_multipart, key, count, part_size,
                                              expires_s)

    def _start_multipart(self, key: str, count: int, part_size: int,
                         expires_s: int) -> MultipartUpload:
        self._ensure_bucket()
        upload_id = self._client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType=content_type_for(key),
            CacheControl=cache_control_for(key))["UploadId"]
        expires_at = _expires_at(expires_s)
        parts = [UploadPart(number, self._client.generate_presigned_url(
            "upload_part", ExpiresIn=expires_s,
            Params={"Bucket": self.bucket, "Key": key, "UploadId": upload_id,
                    "PartNumber": number})) for number in range(1, count + 1)]
        return MultipartUpload(upload_id, part_size, parts, expires_at)

    async def complete_multipart(
        self, key: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> None:
        keys.check_key(key)
        if not parts:
            raise InvalidInput("an upload in parts needs at least one part")
        await anyio.to_thread.run_sync(self._complete_multipart, key, upload_id, parts)

    def _complete_multipart(self, key: str, upload_id: str,
                            parts: list[tuple[int, str]]) -> None:
        try:
            self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": number, "ETag": etag}
                                           for number, etag in sorted(parts)]})
        except ClientError as exc:
            if _code(exc) in _BAD_PARTS:
                raise InvalidInput(f"the upload cannot be completed: {_code(exc)}") from exc
            raise

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        keys.check_key(key)
        await anyio.to_thread.run_sync(self._abort, key, upload_id)

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if _status(exc) != 404:  # already completed or aborted
                raise

    async def close(self) -> None:
        self._client.close()


def make_client(endpoint: str | None, region: str | None, *, access_key: str | None = None,
                secret_key: str | None = None) -> "S3Client":
    """A boto3 S3 client: SigV4, path-style addressing (MinIO, SeaweedFS and custom domains
    have no per-bucket host names). Keys default to boto3's usual sources (AWS_* env vars)."""
    session = boto3.session.Session(aws_access_key_id=access_key,
                                    aws_secret_access_key=secret_key, region_name=region)
    return session.client("s3", endpoint_url=endpoint,
                          region_name=session.region_name or "us-east-1", config=Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5,
        read_timeout=60,
        max_pool_connections=32,  # worker threads share the client
        # Checksums only where S3 requires them: not every S3 API accepts the newer ones.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    ))


def open_store(url: str, settings: Settings) -> S3ObjectStore:
    """``s3://BUCKET?endpoint=URL&region=NAME&multipart_mb=N`` -> a store on that bucket.
    ``endpoint`` defaults to AWS, ``region`` to AWS_REGION or us-east-1, ``multipart_mb``
    (uploads above it go in parts) to 100."""
    parts = urlsplit(url)
    if not parts.netloc or parts.path not in ("", "/"):
        raise ValueError(f"expected s3://BUCKET?endpoint=…&region=…, not {url!r}")
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    unknown = set(query) - {"endpoint", "region", "multipart_mb"}
    if unknown:
        raise ValueError(f"unknown S3 storage URL parameters: {', '.join(sorted(unknown))}")
    threshold = int(query.get("multipart_mb", DEFAULT_MULTIPART_THRESHOLD // MiB)) * MiB
    client = make_client(query.get("endpoint"), query.get("region"))
    return S3ObjectStore(client, parts.netloc, multipart_threshold=threshold)


def _expires_at(expires_s: int) -> datetime:
    """When a URL signed now for ``expires_s`` stops working; the signature's clock has
    whole seconds, so this is rounded down to never promise more than it gives."""
    if not 1 <= expires_s <= MAX_EXPIRES_S:
        raise ValueError(f"expiry must be 1 to {MAX_EXPIRES_S} seconds")
    return datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=expires_s)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
