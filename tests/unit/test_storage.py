"""Storage backends behind one interface: a local directory and S3 (moto's server on loopback)."""

from __future__ import annotations

import hashlib

import boto3
import pytest
from moto.server import ThreadedMotoServer

from app.storage import StorageError, build_storage

BUCKET = "pictor-test"


@pytest.fixture(scope="module")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def s3_bucket(s3_endpoint, aws_credentials):
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield BUCKET
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return build_storage({"STORAGE_BACKEND": "local", "STORAGE_DIR": str(tmp_path)})
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return build_storage(
        {"STORAGE_BACKEND": "s3", "S3_BUCKET": bucket, "S3_ENDPOINT_URL": endpoint}
    )


def test_bytes_round_trip_and_stream_in_chunks(storage):
    data = bytes(range(256)) * 1000
    storage.put("p1/i1/original.png", data, "image/png")
    assert storage.exists("p1/i1/original.png")
    assert storage.get("p1/i1/original.png") == data
    chunks = list(storage.open_chunks("p1/i1/original.png", chunk_size=10_000))
    assert b"".join(chunks) == data and len(chunks) > 1


def test_missing_key_is_file_not_found(storage):
    assert not storage.exists("p1/nothing.png")
    with pytest.raises(FileNotFoundError):
        storage.get("p1/nothing.png")
    with pytest.raises(FileNotFoundError):
        next(storage.open_chunks("p1/nothing.png"))


def test_delete_removes_and_is_idempotent(storage):
    storage.put("p1/i2/thumb.webp", b"webp", "image/webp")
    storage.delete("p1/i2/thumb.webp")
    storage.delete("p1/i2/thumb.webp")
    assert not storage.exists("p1/i2/thumb.webp")


def test_a_prefix_deletes_as_a_whole(storage):
    for key in ("p1/a/original.png", "p1/b/thumb.webp", "p2/a/original.png"):
        storage.put(key, b"bytes", "image/png")

    storage.delete_prefix("p1")

    assert not storage.exists("p1/a/original.png") and not storage.exists("p1/b/thumb.webp")
    assert storage.get("p2/a/original.png") == b"bytes"
    storage.delete_prefix("p1")  # nothing left: not an error


def test_health_check_writes_and_cleans_up(storage):
    storage.check()


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs/path", "a/../../b", "a//b", "with space"])
def test_local_storage_refuses_keys_that_could_escape(tmp_path, key):
    storage = build_storage({"STORAGE_BACKEND": "local", "STORAGE_DIR": str(tmp_path / "s")})
    with pytest.raises(ValueError):
        storage.put(key, b"x", "text/plain")


def test_local_write_failure_is_a_storage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    storage = build_storage({"STORAGE_BACKEND": "local", "STORAGE_DIR": str(blocker)})
    with pytest.raises(StorageError):
        storage.put("p/i/original.png", b"x", "image/png")


def test_s3_bucket_that_does_not_exist_is_a_storage_error(s3_endpoint, aws_credentials):
    storage = build_storage(
        {"STORAGE_BACKEND": "s3", "S3_BUCKET": "no-such-bucket", "S3_ENDPOINT_URL": s3_endpoint}
    )
    with pytest.raises(StorageError):
        storage.put("p/i/original.png", b"x", "image/png")


@pytest.fixture
def app_config(request):
    if "s3_generation" not in request.node.name:
        return {}
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return {"STORAGE_BACKEND": "s3", "S3_BUCKET": bucket, "S3_ENDPOINT_URL": endpoint}


def test_s3_generation_is_stored_in_the_bucket_and_served(api, s3_endpoint):
    response = api.post(
        "/api/v1/generations", json={"prompt": "in the cloud"}, headers={"Prefer": "wait=30"}
    )
    data = response.get_json()["data"]
    assert data["status"] == "success", data
    image = data["outputImage"]
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")

    def keys() -> set[str]:
        return {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]}

    prefix = f"{data['projectId']}/{image['id']}"
    assert keys() == {f"{prefix}/original.png"}  # the thumbnail is made when first asked for
    served = api.client.get(image["url"])
    assert served.status_code == 200
    assert hashlib.sha256(served.data).hexdigest() == image["sha256"]
    thumbnail = api.client.get(image["thumbnailUrl"])
    assert thumbnail.status_code == 200
    assert thumbnail.mimetype == "image/webp"
    assert keys() == {f"{prefix}/original.png", f"{prefix}/thumb.webp"}
    assert api.client.get(image["thumbnailUrl"]).data == thumbnail.data
