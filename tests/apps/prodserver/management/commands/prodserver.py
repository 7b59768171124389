from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils.module_loading import import_string


class Command(BaseCommand):
    help = "Start a process of PRODUCTION_PROCESSES, as django-prodserver's prodserver does"

    def add_arguments(self, parser):
        parser.add_argument("process")

    def handle(self, process, **options):
        config = settings.PRODUCTION_PROCESSES[process]
        import_string(config["BACKEND"])(**config).start_server()
