"""--log-config (embedded in granc by py.c): Granian's default dictConfig,
shallowly updated with the file's JSON object (a "loggers" key there
replaces granc's loggers), then the level of "_granian" forced to
--log-level, as Granian does.
"""
import copy, json, logging, logging.config
BASE = {'version': 1, 'disable_existing_loggers': False,
 'formatters': {
  'generic': {'()': 'logging.Formatter', 'fmt': '[%(levelname)s] %(message)s',
              'datefmt': '[%Y-%m-%d %H:%M:%S %z]'},
  'access': {'()': 'logging.Formatter', 'fmt': '%(message)s',
             'datefmt': '[%Y-%m-%d %H:%M:%S %z]'}},
 'handlers': {
  'console': {'formatter': 'generic', 'class': 'logging.StreamHandler', 'stream': 'ext://sys.stdout'},
  'access': {'formatter': 'access', 'class': 'logging.StreamHandler', 'stream': 'ext://sys.stdout'}},
 'loggers': {
  '_granian': {'handlers': ['console'], 'level': 'INFO', 'propagate': False},
  'granian.access': {'handlers': ['access'], 'level': 'INFO', 'propagate': False}}}
def setup(path, level, enabled):
    conf = copy.deepcopy(BASE)
    with open(path) as f:
        conf.update(json.load(f))
    conf['loggers'].setdefault('_granian', {})['level'] = level
    logging.config.dictConfig(conf)
    server = logging.getLogger('_granian')
    if not enabled:
        server.setLevel(logging.CRITICAL + 1)
    return server, logging.getLogger('granian.access')
