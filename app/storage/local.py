from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from app.storage import StorageError

KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")


class LocalStorage:
    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if not KEY_RE.match(key) or ".." in key:
            raise ValueError(f"invalid storage key {key!r}")
        return self.root / key

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename, so a reader never sees half a file and a full disk leaves none.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StorageError(f"could not store {key}: {exc.strerror or exc}") from exc

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise StorageError(f"could not read {key}: {exc}") from exc

    def open(self, key: str) -> BinaryIO:
        """The file itself: a server can send it with sendfile(2), without copying it."""
        return self._path(key).open("rb")

    def open_chunks(self, key: str, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
        with self.open(key) as handle:
            while chunk := handle.read(chunk_size):
                yield chunk

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete_prefix(self, prefix: str) -> None:
        try:
            shutil.rmtree(self._path(prefix))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(f"could not delete {prefix}/: {exc}") from exc

    def check(self) -> None:
        key = f"health/{uuid.uuid4().hex}"  # KEY_RE: a key starts with a letter or digit
        self.put(key, b"ok", "text/plain")
        if self.get(key) != b"ok":
            raise StorageError("read back different bytes")
        self.delete(key)
