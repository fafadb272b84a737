"""Local storage runs out of space (a 64 KiB tmpfs, nearly filled) under a real worker: the
generation ends failed with STORAGE_ERROR and a clear message, is refunded once, and leaves no
partial files behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import CreditTransaction, Generation, Image
from app.services import credits

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def full_disk(tmp_path):
    mount_point = tmp_path / "tiny-disk"
    mount_point.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(  # noqa: S603
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],  # noqa: S607
        capture_output=True,
        timeout=10,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        storage = mount_point / "storage"
        storage.mkdir()
        filler = (mount_point / "filler").open("wb", buffering=0)
        with filler, contextlib.suppress(OSError):  # ENOSPC: the disk is full
            while True:
                filler.write(b"\0" * 1024)
        yield storage
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True, timeout=10)  # noqa: S603,S607


@pytest.fixture
def app_config(full_disk, private_redis):
    return {"STORAGE_DIR": str(full_disk), "REDIS_URL": private_redis.url}


def test_full_disk_fails_the_generation_with_storage_error_and_one_refund(
    api, user, workers, full_disk
):
    generation_id = api.post("/api/v1/generations", json={"prompt": "no room"}).get_json()["data"][
        "id"
    ]
    workers.burst()

    deadline = time.monotonic() + 60
    while (status := _status(generation_id)) not in ("success", "failed"):
        assert time.monotonic() < deadline, status
        time.sleep(0.3)
    data = api.get(f"/api/v1/generations/{generation_id}").get_json()["data"]
    assert data["status"] == "failed", workers.logs()
    assert data["error"]["code"] == "STORAGE_ERROR"
    assert data["error"]["message"] == "The image could not be stored"
    refunds = db.session.scalar(
        select(func.count()).where(
            CreditTransaction.type == "refund", CreditTransaction.generation_id == generation_id
        )
    )
    assert refunds == 1 and credits.balance(user.id) == 50 and credits.ledger_consistent(user.id)
    assert db.session.scalar(select(func.count()).select_from(Image)) == 0
    assert [p for p in Path(full_disk).rglob("*") if p.is_file()] == []


def _status(generation_id: str) -> str:
    status = db.session.scalar(select(Generation.status).where(Generation.id == generation_id))
    db.session.commit()
    return status
