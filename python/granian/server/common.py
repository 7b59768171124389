"""Granian's Server, run by granc.

The constructor takes every keyword of Granian 2.8 with Granian's defaults
and clamps.  serve() runs Granian's checks (the same ConfigurationError,
before anything starts), turns the keywords into granc's command line
(_options(), one table), and supervises granc as a child: startup hooks
first, SIGINT/SIGTERM/SIGHUP forwarded (reload hooks before SIGHUP),
shutdown hooks after it exits, and None or SystemExit(code) as Granian
returns.

Leniencies on purpose: paths may be str or PathLike (Granian wants Path),
numbers may be int-like strings, booleans may be click's words ("true",
"0", "yes"...).  Callers pass all of these.
"""
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

from .. import _granc
from .._loops import loops
from ..constants import HTTPModes, Interfaces, Loops, RuntimeModes, SSLProtocols, TaskImpl
from ..errors import ConfigurationError, PidFileError
from ..log import DEFAULT_ACCESSLOG_FMT, LogLevels, configure_logging, logger

_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}


def _value(v):
    """An enum member or its plain string: the string.  Never str(), which
    gives "LogLevels.info" for Granian's LogLevels."""
    return getattr(v, "value", v)


def _int(name, v):
    try:
        return int(v)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name}: expected an integer, got {v!r}") from None


def _opt_int(name, v):
    return None if v is None else _int(name, v)


def _bool(name, v):
    if isinstance(v, str):
        if v.strip().lower() in _TRUE | _FALSE:
            return v.strip().lower() in _TRUE
        raise ConfigurationError(f"{name}: expected a boolean, got {v!r}")
    return bool(v)


def _path(v):
    """str or PathLike, made absolute (and resolved) as Granian's .resolve()."""
    return None if v is None else str(Path(os.fspath(v)).resolve())


def _seq(v):
    """A sequence keyword; one str or path alone counts as one item."""
    if v is None:
        return []
    if isinstance(v, (str, bytes, os.PathLike)):
        return [v]
    return list(v)


def _choice(name, v, enum):
    v = _value(v)
    if v not in {m.value for m in enum}:
        logger.error(f"Invalid {name}: {v!r}")
        raise ConfigurationError(name)
    return v


def _clamp(v, lo, hi=None):
    """Granian's API takes values its CLI (and granc) would refuse."""
    v = max(lo, v)
    return v if hi is None else min(hi, v)


class AbstractServer:
    def __init__(
        self,
        target,
        address="127.0.0.1",
        port=8000,
        uds=None,
        uds_permissions=None,
        interface=Interfaces.RSGI,
        workers=1,
        blocking_threads=None,
        blocking_threads_idle_timeout=30,
        runtime_threads=1,
        runtime_blocking_threads=None,
        runtime_mode=RuntimeModes.auto,
        loop=Loops.auto,
        task_impl=TaskImpl.asyncio,
        http=HTTPModes.auto,
        websockets=True,
        backlog=1024,
        backpressure=None,
        http1_settings=None,
        http2_settings=None,
        log_enabled=True,
        log_level=LogLevels.info,
        log_dictconfig=None,
        log_access=False,
        log_access_format=None,
        ssl_cert=None,
        ssl_key=None,
        ssl_key_password=None,
        # Granian's default is tls1.3, which BearSSL lacks; None leaves it
        # to granc (TLS 1.2 and up, as tls1.2 means in Granian).
        ssl_protocol_min=None,
        ssl_ca=None,
        ssl_crl=None,
        ssl_client_verify=False,
        url_path_prefix=None,
        respawn_failed_workers=False,
        respawn_interval=3.5,
        rss_sample_interval=30,
        rss_samples=1,
        workers_lifetime=None,
        workers_max_rss=None,
        workers_kill_timeout=None,
        factory=False,
        working_dir=None,
        env_files=None,
        static_path_route=None,
        static_path_mount=None,
        static_path_dir_to_file=None,
        static_path_expires=86400,
        metrics_enabled=False,
        metrics_scrape_interval=15,
        metrics_address="127.0.0.1",
        metrics_port=9090,
        reload=False,
        reload_paths=None,
        reload_ignore_dirs=None,
        reload_ignore_patterns=None,
        reload_ignore_paths=None,
        reload_filter=None,
        reload_tick=50,
        reload_ignore_worker_failure=False,
        process_name=None,
        pid_file=None,
    ):
        if isinstance(target, os.PathLike):
            target = os.fspath(target)
        if not isinstance(target, str):
            raise ConfigurationError(
                "target: granc loads the app itself, so target must be an import "
                f"string such as 'module:app' or 'path/app.py:app', not {type(target).__name__}")
        self.target = target
        self.bind_addr = str(address)
        self.bind_port = _int("port", port)
        self.bind_uds = _path(uds)
        self.uds_permissions = _opt_int("uds_permissions", uds_permissions)
        self.interface = _value(interface)
        self.workers = max(1, _int("workers", workers))
        self.runtime_threads = max(1, _int("runtime_threads", runtime_threads))
        self.runtime_blocking_threads = (512 if runtime_blocking_threads is None
                                         else max(1, _int("runtime_blocking_threads",
                                                          runtime_blocking_threads)))
        self.runtime_mode = _value(runtime_mode)
        self.loop = _value(loop)
        self.task_impl = _value(task_impl)
        self.http = _value(http)
        if isinstance(self.http, int) and not isinstance(self.http, bool):
            self.http = str(self.http)          # http=2: Granian fails in the worker
        self.websockets = _bool("websockets", websockets)
        self.backlog = max(128, _int("backlog", backlog))
        self.backpressure = max(1, _opt_int("backpressure", backpressure)
                                or self.backlog // self.workers)
        self.blocking_threads = (
            _int("blocking_threads", blocking_threads) if blocking_threads is not None
            else max(1, self.backpressure // 2 if self.interface == "wsgi" else 1))
        self.blocking_threads_idle_timeout = _int("blocking_threads_idle_timeout",
                                                  blocking_threads_idle_timeout)
        self.http1_settings = http1_settings
        self.http2_settings = http2_settings
        self.log_enabled = _bool("log_enabled", log_enabled)
        self.log_level = _value(log_level)
        self.log_config = log_dictconfig
        self.log_access = _bool("log_access", log_access)
        self.log_access_format = log_access_format or DEFAULT_ACCESSLOG_FMT
        self.url_path_prefix = url_path_prefix
        self.respawn_failed_workers = _bool("respawn_failed_workers", respawn_failed_workers)
        try:
            self.respawn_interval = float(respawn_interval)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"respawn_interval: expected seconds, got {respawn_interval!r}") from None
        self.rss_sample_interval = _int("rss_sample_interval", rss_sample_interval)
        self.rss_samples = _int("rss_samples", rss_samples)
        self.workers_lifetime = _opt_int("workers_lifetime", workers_lifetime)
        self.workers_max_rss = _opt_int("workers_max_rss", workers_max_rss)
        self.workers_kill_timeout = _opt_int("workers_kill_timeout", workers_kill_timeout)
        self.factory = _bool("factory", factory)
        self.working_dir = _path(working_dir)
        self.env_files = [_path(p) for p in _seq(env_files)]
        self.metrics_enabled = _bool("metrics_enabled", metrics_enabled)
        self.metrics_scrape_interval = _int("metrics_scrape_interval", metrics_scrape_interval)
        self.metrics_address = str(metrics_address)
        self.metrics_port = _int("metrics_port", metrics_port)
        self.reload_on_changes = _bool("reload", reload)
        self.reload_paths = [_path(p) for p in _seq(reload_paths)] or [os.getcwd()]
        self.reload_ignore_dirs = [str(d) for d in _seq(reload_ignore_dirs)]
        self.reload_ignore_patterns = [str(p) for p in _seq(reload_ignore_patterns)]
        self.reload_ignore_paths = [_path(p) for p in _seq(reload_ignore_paths)]
        self.reload_filter = reload_filter
        self.reload_tick = _int("reload_tick", reload_tick)
        self.reload_ignore_worker_failure = _bool("reload_ignore_worker_failure",
                                                  reload_ignore_worker_failure)
        self.process_name = process_name
        self.pid_file = _path(pid_file)
        self.pid = None

        self.hooks_startup = []
        self.hooks_reload = []
        self.hooks_shutdown = []

        if self.log_level not in {m.value for m in LogLevels}:
            raise ConfigurationError(f"log_level: unknown level {self.log_level!r}")
        configure_logging(self.log_level, self.log_config, self.log_enabled)

        self.static_path = None
        mounts = _seq(static_path_mount)
        if mounts:
            routes = _seq(static_path_route)
            if len(mounts) == 1 and not routes:
                routes = ["/static"]
            if len(routes) != len(mounts):
                logger.error("Static path routes and mounts should have the same length")
                raise ConfigurationError("static_path")
            self.static_path = ([(str(r), _path(m)) for r, m in zip(routes, mounts)],
                                static_path_dir_to_file, static_path_expires)

        self.ssl = None
        if ssl_cert and ssl_key:    # TLS is on only with both, as in Granian
            cert, key = _path(ssl_cert), _path(ssl_key)
            # Granian loads them here too: a bad file or password fails now.
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, ssl_key_password)
            client_verify = _bool("ssl_client_verify", ssl_client_verify)
            if client_verify and not ssl_ca:
                logger.warning("SSL client verification requires a CA certificate, ignoring")
                client_verify = False
            self.ssl = {
                "ssl-certificate": cert, "ssl-keyfile": key,
                "ssl-keyfile-password": ssl_key_password,
                "ssl-protocol-min": _value(ssl_protocol_min),
                "ssl-ca": _path(ssl_ca),
                "ssl-crl": [_path(p) for p in _seq(ssl_crl)],
                "ssl-client-verify": client_verify,
            }

    # -- hooks: zero-argument callables, usable as decorators --------------

    @staticmethod
    def _call_hooks(hooks):
        for hook in hooks:
            hook()

    def on_startup(self, hook):
        self.hooks_startup.append(hook)
        return hook

    def on_reload(self, hook):
        self.hooks_reload.append(hook)
        return hook

    def on_shutdown(self, hook):
        self.hooks_shutdown.append(hook)
        return hook

    def _init_shared_socket(self):
        """Granian binds here; granc binds in its own master.  A subclass
        overriding it (to adopt a socket) is refused by serve()."""

    # -- checks ------------------------------------------------------------

    def _check(self, spawn_target, target_loader):
        """Granian's ConfigurationErrors, in its order, then what granc
        cannot express.  Also drops what Granian ignores."""
        for name, v in (("spawn_target", spawn_target), ("target_loader", target_loader)):
            if v is not None:
                raise ConfigurationError(
                    f"{name}: granc imports the target itself; a Python callable cannot "
                    "be handed to it")
        if type(self)._init_shared_socket is not AbstractServer._init_shared_socket:
            raise ConfigurationError(
                "_init_shared_socket: granc binds its own sockets; pass uds, or start granc "
                "with --fd for an inherited socket")
        self.interface = _choice("interface", self.interface, Interfaces)
        self.http = _choice("http", self.http, HTTPModes)
        self.runtime_mode = _choice("runtime_mode", self.runtime_mode, RuntimeModes)
        self.task_impl = _choice("task_impl", self.task_impl, TaskImpl)
        if self.loop in loops:
            raise ConfigurationError(
                f"loop: {self.loop!r} was registered with granian.loops; granc builds its "
                "loop in C and offers auto, asyncio and uvloop")
        self.loop = _choice("loop", self.loop, Loops)

        if self.interface != "wsgi" and self.blocking_threads > 1:
            logger.error("Blocking threads > 1 is not supported on ASGI and RSGI")
            raise ConfigurationError("blocking_threads")
        if self.websockets and self.interface == "wsgi":
            self.websockets = False
        if self.workers_lifetime is not None:
            if self.workers_lifetime < 60:
                logger.error("Workers lifetime cannot be less than 60 seconds")
                raise ConfigurationError("workers_lifetime")
            if self.reload_on_changes:
                self.workers_lifetime = None
        if self.reload_on_changes:      # Granian drops these with the reloader
            self.workers_max_rss = None
            self.metrics_enabled = False
        if not 5 <= self.blocking_threads_idle_timeout <= 600:
            logger.error("Blocking threads idle timeout must be between 5 and 600 seconds")
            raise ConfigurationError("blocking_threads_idle_timeout")

        if self.ssl:
            proto = self.ssl["ssl-protocol-min"]
            if proto is not None and proto not in {m.value for m in SSLProtocols}:
                raise ConfigurationError(f"ssl_protocol_min: unknown protocol {proto!r}")
            if proto == "tls1.3":
                logger.error("TLS 1.3 is not available in granc: BearSSL speaks TLS 1.2")
                raise ConfigurationError(
                    "ssl_protocol_min: TLS 1.3 is not available in granc (BearSSL speaks "
                    "TLS 1.2); leave it unset or pass SSLProtocols.tls12")
        if self.reload_on_changes and self.reload_filter is not None:
            raise ConfigurationError(
                "reload_filter: a watchfiles filter class cannot be passed to granc; use "
                "reload_ignore_dirs, reload_ignore_patterns and reload_ignore_paths")
        if self.log_config is not None:
            try:
                json.dumps(self.log_config)
            except (TypeError, ValueError) as e:
                raise ConfigurationError(
                    f"log_dictconfig: granc reads it as JSON, and this one is not ({e}); "
                    "use strings such as 'ext://sys.stderr' or 'logging.Formatter'") from None

    # -- the command line --------------------------------------------------

    def _options(self):
        """granc's options, in --help order.  None: not passed (granc's
        default is Granian's); True/False: --x / --no-x; a list: repeated."""
        h1, h2 = self.http1_settings, self.http2_settings
        o = {
            "host": self.bind_addr,
            "port": self.bind_port,
            "uds": self.bind_uds,
            "uds-permissions": (None if self.uds_permissions is None
                                else "0" + format(self.uds_permissions, "o")),
            "interface": self.interface,
            "http": self.http,
            "ws": self.websockets,
            "workers": self.workers,
            "blocking-threads": self.blocking_threads,
            "blocking-threads-idle-timeout": self.blocking_threads_idle_timeout,
            "runtime-threads": self.runtime_threads,
            "runtime-blocking-threads": self.runtime_blocking_threads,
            "runtime-mode": self.runtime_mode,
            "loop": self.loop,
            "task-impl": self.task_impl,
            "backlog": self.backlog,
            "backpressure": self.backpressure,
        }
        if h1 is not None:
            o["http1-buffer-size"] = _clamp(_int("max_buffer_size", h1.max_buffer_size), 8192)
            o["http1-header-read-timeout"] = _clamp(
                _int("header_read_timeout", h1.header_read_timeout), 1, 60000)
            o["http1-keep-alive"] = bool(h1.keep_alive)
            o["http1-pipeline-flush"] = bool(h1.pipeline_flush)
        # HTTP/2 settings mean nothing when only HTTP/1 is served (granc
        # ignores them then, as Granian does).
        if h2 is not None and self.http != "1":
            interval = getattr(h2, "keep_alive_interval", None)
            o.update({
                "http2-adaptive-window": bool(h2.adaptive_window),
                "http2-initial-connection-window-size":
                    _clamp(_int("initial_connection_window_size",
                                h2.initial_connection_window_size), 1024),
                "http2-initial-stream-window-size":
                    _clamp(_int("initial_stream_window_size", h2.initial_stream_window_size),
                           1024),
                "http2-keep-alive-interval": (_clamp(interval, 1, 60000)
                                              if isinstance(interval, int) else None),
                "http2-keep-alive-timeout": _clamp(_int("keep_alive_timeout",
                                                        h2.keep_alive_timeout), 1),
                "http2-max-concurrent-streams": _clamp(_int("max_concurrent_streams",
                                                            h2.max_concurrent_streams), 10),
                # RFC 9113 6.5.2's range (Granian's h2 crate panics below it)
                "http2-max-frame-size": _clamp(_int("max_frame_size", h2.max_frame_size),
                                               16384, 16777215),
                "http2-max-headers-size": _clamp(_int("max_headers_size",
                                                      h2.max_headers_size), 1),
                "http2-max-send-buffer-size": _clamp(_int("max_send_buffer_size",
                                                          h2.max_send_buffer_size), 1024),
            })
        o.update({
            "log": self.log_enabled,
            "log-level": self.log_level,
            "log-config": None,                 # serve() writes the file
            "access-log": self.log_access,
            "access-log-fmt": self.log_access_format,
        })
        o.update(self.ssl or {})
        o.update({
            "url-path-prefix": self.url_path_prefix,
            "respawn-failed-workers": self.respawn_failed_workers,
            "respawn-interval": repr(self.respawn_interval),
            "rss-sample-interval": _clamp(self.rss_sample_interval, 1, 300),
            "rss-samples": max(1, self.rss_samples),
            "workers-lifetime": self.workers_lifetime,
            "workers-max-rss": self.workers_max_rss,
            # 0 means "wait forever" to Granian, as leaving it out does here
            "workers-kill-timeout": (_clamp(self.workers_kill_timeout, 1, 1800)
                                     if self.workers_kill_timeout else None),
            "factory": self.factory,
            "working-dir": self.working_dir,
            "env-files": self.env_files,
        })
        if self.static_path:
            pairs, dir_to_file, expires = self.static_path
            o["static-path-route"] = [r for r, _ in pairs]
            o["static-path-mount"] = [m for _, m in pairs]
            o["static-path-dir-to-file"] = dir_to_file
            o["static-path-expires"] = expires or 0     # Granian: 0 or None, no max-age
        o.update({
            "metrics": self.metrics_enabled,
            "metrics-scrape-interval": _clamp(self.metrics_scrape_interval, 1, 60),
            "metrics-address": self.metrics_address,
            "metrics-port": self.metrics_port,
            "reload": self.reload_on_changes,
        })
        if self.reload_on_changes:
            o.update({
                "reload-paths": self.reload_paths,
                "reload-ignore-dirs": self.reload_ignore_dirs,
                "reload-ignore-patterns": self.reload_ignore_patterns,
                "reload-ignore-paths": self.reload_ignore_paths,
                "reload-tick": _clamp(self.reload_tick, 50, 5000),
                "reload-ignore-worker-failure": self.reload_ignore_worker_failure,
            })
        o["process-name"] = self.process_name
        return o

    def _argv(self, binary, log_config=None):
        argv = [binary]
        opts = self._options()
        opts["log-config"] = log_config
        # --x=value always: a value may start with "-"
        for name, v in opts.items():
            if v is None:
                continue
            if isinstance(v, bool):
                argv.append(f"--{name}" if v else f"--no-{name}")
            elif isinstance(v, list):
                argv += [f"--{name}={os.fspath(item)}" for item in v]
            else:
                argv.append(f"--{name}={v}")
        return argv + ["--", self.target]

    # -- the pid file: the caller's pid, as Granian writes its main pid ----

    def _write_pidfile(self):
        if not self.pid_file:
            return
        try:
            with open(self.pid_file) as f:
                old = int(f.read())
        except FileNotFoundError:
            old = None
        except (OSError, ValueError):
            logger.error(f"Unable to read existing PID file {self.pid_file}")
            raise PidFileError from None
        if old is not None and old != self.pid:
            try:
                os.kill(old, 0)
                alive = True
            except ProcessLookupError:
                alive = False
            except PermissionError:
                alive = True
            if alive:
                logger.error(f"The PID file {self.pid_file} already exists for {old}")
                raise PidFileError
        with open(self.pid_file, "w") as f:
            f.write(str(self.pid))

    def _unlink_pidfile(self):
        if not self.pid_file:
            return
        try:
            with open(self.pid_file) as f:
                if int(f.read()) == self.pid:
                    os.unlink(self.pid_file)
        except (OSError, ValueError):
            pass

    # -- running -----------------------------------------------------------

    def serve(self, spawn_target=None, target_loader=None, wrap_loader=True):
        """Run granc until it stops: None after a clean stop, SystemExit
        with granc's status otherwise.  Blocks; needs the main thread (for
        the signal handlers), as Granian's does."""
        self._check(spawn_target, target_loader)
        binary = _granc.binary()
        self.pid = os.getpid()
        self._write_pidfile()
        try:
            code = self._run(binary)
        except BaseException:
            self._unlink_pidfile()
            raise
        self._call_hooks(self.hooks_shutdown)
        self._unlink_pidfile()
        if code:
            sys.exit(code)

    def _run(self, binary):
        """Startup hooks, granc with signals forwarded; its exit status."""
        log_config = None
        if self.log_config is not None:
            fd, log_config = tempfile.mkstemp(prefix="granian-logconfig-", suffix=".json")
            with os.fdopen(fd, "w") as f:
                json.dump(self.log_config, f)
        argv = self._argv(binary, log_config)
        proc = None
        pending = []                # signals that came before granc did

        def forward(sig, frame):
            if sig == signal.SIGHUP:
                try:
                    self._call_hooks(self.hooks_reload)
                except Exception:   # granc must not be left unsupervised
                    logger.exception("on_reload hook failed")
            if proc is None:
                pending.append(sig)
            else:
                proc.send_signal(sig)

        previous = {}
        try:
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                previous[s] = signal.signal(s, forward)     # main thread only, as Granian
            self._call_hooks(self.hooks_startup)
            if signal.SIGINT in pending or signal.SIGTERM in pending:
                return 0            # stopped before it started
            proc = subprocess.Popen(argv, env=_granc.child_env(api=True),
                                    preexec_fn=_granc.preexec())
            for sig in pending:
                proc.send_signal(sig)
            code = proc.wait()
            return 128 - code if code < 0 else code    # killed: the shell's convention
        finally:
            if proc is not None and proc.poll() is None:    # an exception above
                proc.terminate()
                proc.wait()
            for s, h in previous.items():
                signal.signal(s, h)
            if log_config:
                os.unlink(log_config)
