#!/usr/bin/env python3
"""Django's command-line utility. Reads .env (see .env.example) through the settings."""

import os
import sys


def main() -> None:
    from pathlib import Path

    from chat_site.env import load_dotenv_file

    load_dotenv_file(Path(__file__).resolve().parent / ".env")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chat_site.settings.dev")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
