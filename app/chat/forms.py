from __future__ import annotations

from django import forms
from django.conf import settings

from chat.models import (
    JOIN_CODE_LENGTH,
    MESSAGE_MAX_LENGTH,
    TITLE_MAX_LENGTH,
    ChatRoom,
)

ALLOWED_IMAGE_FORMATS = {"JPEG", "PNG", "GIF", "WEBP"}


class RoomForm(forms.ModelForm):
    title = forms.CharField(
        max_length=TITLE_MAX_LENGTH,
        strip=True,
        error_messages={
            "max_length": "A room title can be at most %(limit_value)d characters "
            "(this one has %(show_value)d).",
            "required": "Give the room a title.",
        },
    )

    class Meta:
        model = ChatRoom
        fields = ("title", "is_public")
        labels = {"is_public": "Public: anyone may read the transcript"}


class MessageForm(forms.Form):
    message = forms.CharField(
        max_length=MESSAGE_MAX_LENGTH,
        strip=True,
        error_messages={
            "max_length": "A message can be at most %(limit_value)d characters "
            "(this one has %(show_value)d).",
            "required": "Type a message first.",
        },
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )


class JoinForm(forms.Form):
    code = forms.CharField(
        max_length=16,
        label="Join code",
        error_messages={"required": "Enter the join code the room's owner gave you."},
    )

    def clean_code(self) -> str:
        code = self.cleaned_data["code"].strip().upper().replace(" ", "")
        if len(code) != JOIN_CODE_LENGTH:
            raise forms.ValidationError(f"A join code has {JOIN_CODE_LENGTH} letters and digits.")
        return code


class RoomImageForm(forms.Form):
    image = forms.ImageField(
        error_messages={
            "invalid_image": "That file is not an image we can read (use JPEG, PNG, GIF or WebP).",
            "required": "Choose an image file.",
        }
    )

    def clean_image(self):  # type: ignore[no-untyped-def]
        upload = self.cleaned_data["image"]
        limit = settings.CHAT_IMAGE_MAX_BYTES
        if upload.size > limit:
            raise forms.ValidationError(
                f"The image is too large: {upload.size // 1024} KiB, the limit is "
                f"{limit // 1024} KiB."
            )
        # Django's ImageField has already opened it with Pillow; check what it found.
        image = getattr(upload, "image", None)
        fmt = getattr(image, "format", None)
        if fmt not in ALLOWED_IMAGE_FORMATS:
            raise forms.ValidationError(
                f"Images must be JPEG, PNG, GIF or WebP (this one is {fmt or 'unknown'})."
            )
        width, height = image.size
        if width * height > settings.CHAT_IMAGE_MAX_PIXELS:
            raise forms.ValidationError("The image has too many pixels.")
        if width < 1 or height < 1:  # pragma: no cover - Pillow refuses these first
            raise forms.ValidationError("The image is empty.")
        upload.seek(0)
        return upload
