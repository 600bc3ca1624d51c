"""A Django Storage that keeps files in a PostgreSQL table.

Why: with two or more web servers an upload must be visible to all of them, and the
blueprint already runs (and backs up) PostgreSQL. For the small images this app takes,
a ``bytea`` row is simple, transactional and needs no extra service. A larger site
swaps this for django-storages' S3 backend by changing ``STORAGES["default"]`` only;
see README.md."""

from __future__ import annotations

import mimetypes
from datetime import datetime
from typing import IO, Any

from django.core.files.base import ContentFile, File
from django.core.files.storage import Storage
from django.urls import reverse
from django.utils.deconstruct import deconstructible


@deconstructible
class DatabaseStorage(Storage):
    def _model(self) -> Any:
        from filestore.models import StoredFile

        return StoredFile

    def _open(self, name: str, mode: str = "rb") -> File:
        if "w" in mode or "a" in mode:
            raise ValueError("DatabaseStorage files are read-only once saved.")
        try:
            row = self._model().objects.only("content").get(name=name)
        except self._model().DoesNotExist:
            raise FileNotFoundError(name) from None
        return ContentFile(bytes(row.content), name=name)

    def _save(self, name: str, content: IO[bytes] | File) -> str:
        if hasattr(content, "seek"):
            content.seek(0)
        data = content.read()
        content_type = (
            getattr(content, "content_type", None)
            or mimetypes.guess_type(name)[0]
            or "application/octet-stream"
        )
        self._model().objects.create(
            name=name, content=data, size=len(data), content_type=content_type
        )
        return name

    def delete(self, name: str) -> None:
        self._model().objects.filter(name=name).delete()

    def exists(self, name: str) -> bool:
        return self._model().objects.filter(name=name).exists()

    def size(self, name: str) -> int:
        try:
            return self._model().objects.values_list("size", flat=True).get(name=name)
        except self._model().DoesNotExist:
            raise FileNotFoundError(name) from None

    def url(self, name: str | None) -> str:
        return reverse("filestore:serve", kwargs={"name": name})

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        prefix = path.rstrip("/") + "/" if path else ""
        names = self._model().objects.filter(name__startswith=prefix).values_list("name", flat=True)
        dirs: set[str] = set()
        files: list[str] = []
        for full in names:
            rest = full[len(prefix) :]
            if "/" in rest:
                dirs.add(rest.split("/", 1)[0])
            else:
                files.append(rest)
        return sorted(dirs), sorted(files)

    def get_created_time(self, name: str) -> datetime:
        try:
            return self._model().objects.values_list("created", flat=True).get(name=name)
        except self._model().DoesNotExist:
            raise FileNotFoundError(name) from None

    get_modified_time = get_created_time
