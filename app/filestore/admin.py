from django.contrib import admin

from filestore.models import StoredFile


@admin.register(StoredFile)
class StoredFileAdmin(admin.ModelAdmin):
    list_display = ("name", "content_type", "size", "created")
    search_fields = ("name",)
    exclude = ("content",)
    readonly_fields = ("name", "content_type", "size", "created")
