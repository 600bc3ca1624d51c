from django.db import models


class StoredFile(models.Model):
    """An uploaded file kept in PostgreSQL, so every web server can read it.

    Names are unique and never reused for different content (uploads get a random
    name), which lets the serving view send year-long, immutable cache headers."""

    name = models.CharField(max_length=255, unique=True)
    content = models.BinaryField()
    size = models.PositiveIntegerField()
    content_type = models.CharField(max_length=100, default="application/octet-stream")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "stored file"

    def __str__(self) -> str:
        return self.name
