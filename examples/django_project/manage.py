#!/usr/bin/env python3
"""Django's command-line utility, e.g. `python3 manage.py check`.

granc does not need it: it imports mysite.wsgi or mysite.asgi directly.
"""
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from django.core.management import execute_from_command_line
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
