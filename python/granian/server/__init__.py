from .mp import MPServer as MPServer
from .mt import MTServer as MTServer

# Granian picks MTServer on free-threaded builds; granc has one kind.
Server = MPServer
