"""GranianASGIServer and GranianWSGIServer as django-prodserver 3.0 has
them: settings ARGS (strings) become typed Granian keywords through an
alias table, then Granian(target=..., interface=..., **kwargs).serve()."""
from django.conf import settings

# ARGS key -> (Granian keyword, type), django-prodserver's aliases
ALIASES = {
    "address": ("address", str), "host": ("address", str),
    "port": ("port", int), "workers": ("workers", int),
    "blocking-threads": ("blocking_threads", int), "blocking_threads": ("blocking_threads", int),
    "threads": ("blocking_threads", int),
    "runtime-threads": ("runtime_threads", int), "runtime_threads": ("runtime_threads", int),
    "backlog": ("backlog", int), "http": ("http", str), "websockets": ("websockets", bool),
    "log-level": ("log_level", str), "log_level": ("log_level", str),
    "log-access": ("log_access", bool), "log_access": ("log_access", bool),
    "ssl-cert": ("ssl_cert", str), "ssl_cert": ("ssl_cert", str),
    "ssl-key": ("ssl_key", str), "ssl_key": ("ssl_key", str),
    "url-path-prefix": ("url_path_prefix", str), "url_path_prefix": ("url_path_prefix", str),
    "reload": ("reload", bool),
}


def _convert(kind, value):
    if kind is bool and isinstance(value, str):
        return value.lower() in ("true", "1", "yes", "on")
    return kind(value)


class GranianServerBase:
    def __init__(self, **config):
        self.args = config.get("ARGS", {})

    def kwargs(self):
        out = {}
        for key, value in self.args.items():
            if key in ALIASES:
                name, kind = ALIASES[key]
                out[name] = _convert(kind, value)
        return out

    def start_server(self, *args):
        from granian import Granian
        Granian(target=self.target(), interface=self.interface(), **self.kwargs()).serve()


def _app_name(dotted):
    return ":".join(dotted.rsplit(".", 1))


class GranianASGIServer(GranianServerBase):
    def interface(self):
        from granian.constants import Interfaces
        return Interfaces.ASGI

    def target(self):
        return _app_name(settings.ASGI_APPLICATION)


class GranianWSGIServer(GranianServerBase):
    def interface(self):
        from granian.constants import Interfaces
        return Interfaces.WSGI

    def target(self):
        return _app_name(settings.WSGI_APPLICATION)
