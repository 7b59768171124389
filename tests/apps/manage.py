#!/usr/bin/env python3
"""manage.py of the prodserver test project: djsite with a stand-in for
django-prodserver (tests/test_pyapi_django.py)."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prodserver.settings")
    from django.core.management import execute_from_command_line
    execute_from_command_line(sys.argv)
