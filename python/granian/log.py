"""Granian's logging names: levels, the default dictConfig, the loggers.

granc's workers apply the same default (worker.c), so a log_dictconfig
written for Granian means the same thing here.
"""
import copy
import logging
import logging.config
from enum import Enum
from typing import Any, Dict, Optional


class LogLevels(str, Enum):
    # No __str__ override, as in Granian: str(LogLevels.info) is
    # "LogLevels.info", so read .value, never str().
    critical = "critical"
    error = "error"
    warning = "warning"
    warn = "warn"
    info = "info"
    debug = "debug"
    notset = "notset"


log_levels_map = {
    LogLevels.critical: logging.CRITICAL,
    LogLevels.error: logging.ERROR,
    LogLevels.warning: logging.WARNING,
    LogLevels.warn: logging.WARN,
    LogLevels.info: logging.INFO,
    LogLevels.debug: logging.DEBUG,
    LogLevels.notset: logging.NOTSET,
}

_DATEFMT = "[%Y-%m-%d %H:%M:%S %z]"
LOGGING_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "generic": {"()": "logging.Formatter", "fmt": "[%(levelname)s] %(message)s",
                    "datefmt": _DATEFMT},
        "access": {"()": "logging.Formatter", "fmt": "%(message)s", "datefmt": _DATEFMT},
    },
    "handlers": {
        "console": {"formatter": "generic", "class": "logging.StreamHandler",
                    "stream": "ext://sys.stdout"},
        "access": {"formatter": "access", "class": "logging.StreamHandler",
                   "stream": "ext://sys.stdout"},
    },
    "loggers": {
        "_granian": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "granian.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}

DEFAULT_ACCESSLOG_FMT = ('[%(time)s] %(addr)s - "%(method)s %(path)s %(protocol)s" '
                         '%(status)d %(dt_ms).3f')

logger = logging.getLogger("_granian")          # the name Granian's Rust side logs to
access_logger = logging.getLogger("granian.access")


def configure_logging(level: LogLevels, config: Optional[Dict[str, Any]] = None,
                      enabled: bool = True):
    """What Granian's constructor does to the calling process's logging:
    the default config shallowly updated with `config`, then the server
    logger's level forced to `level`."""
    conf = copy.deepcopy(LOGGING_CONFIG)
    if config:
        conf.update(config)
    conf["loggers"].setdefault("_granian", {})["level"] = log_levels_map[level]
    logging.config.dictConfig(conf)
    if not enabled:
        logger.setLevel(logging.CRITICAL + 1)
