"""One adapter per tool. Every adapter runs the same workload (the compiled `helper`
example, exec'd directly, no shell in between) and is configured for the smallest restart
delay and a 2 s stop timeout where the tool allows it.

An adapter knows how to: write its config for a list of services into a work dir,
start the tool (as the leader of a new session and process group, so the harness can
always SIGKILL the group), stop it the tool's own graceful way, name the supervisor pid,
and find a service's log file.
"""

import os
import shlex
import signal
import subprocess
from dataclasses import dataclass, field

from . import procs

STOP_TIMEOUT_S = 2


@dataclass
class Svc:
    """A workload service: `helper` with args. `port` is the port it answers on (for
    fleet it is also declared in `ports`, unless the service uses a fleet `socket`)."""

    name: str
    args: list
    port: int = None
    restart: bool = True
    # Extra raw `key = value` TOML lines for fleet only (socket, redeploy, health, watch).
    fleet_extra: dict = field(default_factory=dict)
    # For fleet: declare `ports = [port]` (off when the port is a fleet `socket`).
    fleet_ports: bool = True


def toml_str(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ini_value(text):
    # supervisord expands %(name)s in its values: a literal % must be doubled.
    return text.replace("%", "%%")


class Adapter:
    name = "?"
    # Restart after a crash: (supported, what the smallest delay configuration is).
    supports_restart = True
    restart_note = ""
    stop_note = ""
    log_note = ""
    # Seconds to wait for a graceful stop before SIGKILL of the tool's group.
    stop_grace = 15.0
    # Teardown re-sends the graceful stop this often while the tool is still running.
    resend_stop_every = 15.0

    def __init__(self, ctx):
        self.ctx = ctx
        self.proc = None
        self.wd = None
        self.services = []
        self._stderr = None
        self._stdout = None

    # -- what every tool provides -------------------------------------------------------
    def available(self):
        """None when usable, else the reason it is not."""
        return None

    def version(self):
        return "?"

    def write_config(self, wd, services):
        raise NotImplementedError

    def command(self):
        raise NotImplementedError

    def stdout_path(self):
        """Where the tool's own stdout goes (None: /dev/null)."""
        return None

    def log_path(self, service):
        raise NotImplementedError

    def stop(self):
        """Graceful stop, the tool's own way."""
        procs.kill_pid(self.proc.pid, signal.SIGTERM)

    def supervisor_pid(self):
        return self.proc.pid if self.proc else None

    def extra_pids(self):
        """Helper processes of the tool other than the supervisor (fleet's keeper)."""
        return []

    # -- shared plumbing ----------------------------------------------------------------
    def env(self):
        env = dict(os.environ)
        env["PATH"] = self.ctx.venv_bin + os.pathsep + env.get("PATH", "")
        env.pop("NO_COLOR", None)
        return env

    def start(self):
        out = self.stdout_path()
        self._stdout = open(out, "wb") if out else subprocess.DEVNULL
        self._stderr = open(os.path.join(self.wd, "tool.stderr"), "wb")
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.wd,
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=self._stderr,
            env=self.env(),
            start_new_session=True,
        )
        return self.proc

    def exited(self):
        return self.proc is None or self.proc.poll() is not None

    def wait(self, timeout):
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def close_files(self):
        for f in (self._stdout, self._stderr):
            if f not in (None, subprocess.DEVNULL):
                try:
                    f.close()
                except OSError:
                    pass
        self._stdout = self._stderr = None

    def stderr_tail(self, n=800):
        try:
            with open(os.path.join(self.wd, "tool.stderr"), "rb") as f:
                data = f.read()
            return data[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def argv(self, svc):
        return [self.ctx.helper] + list(svc.args)


def _tool_version(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        text = (out.stdout + out.stderr).strip().splitlines()
        return text[0] if text else "?"
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"? ({err})"


class Fleet(Adapter):
    name = "fleet"
    restart_note = 'restart="always", backoff initial=0s'
    stop_note = 'stop_timeout="2s"'
    log_note = ".fleet/logs/<svc>.log, log_max_size raised to 4GB (no rotation)"

    def __init__(self, ctx):
        super().__init__(ctx)
        self._keepers = set()

    def version(self):
        return _tool_version([self.ctx.fleet, "--version"])

    def write_config(self, wd, services):
        self.wd, self.services = wd, services
        lines = [
            "[project]",
            'name = "bench"',
            # 1M lines of ~130 bytes would rotate (default 10MB) and drop lines.
            'log_max_size = "4GB"',
            "",
        ]
        for svc in services:
            lines.append(f"[services.{svc.name}]")
            argv = ", ".join(toml_str(a) for a in self.argv(svc))
            lines.append(f"command = [{argv}]")
            lines.append(f'restart = "{"always" if svc.restart else "never"}"')
            lines.append('backoff = { initial = "0s", max = "1s" }')
            lines.append("max_restarts = 1000")
            if svc.port is not None and svc.fleet_ports:
                lines.append(f"ports = [{svc.port}]")
            lines.append(f'stop_timeout = "{STOP_TIMEOUT_S}s"')
            for key, value in svc.fleet_extra.items():
                lines.append(f"{key} = {value}")
            lines.append("")
        with open(os.path.join(wd, "fleet.toml"), "w") as f:
            f.write("\n".join(lines))

    def command(self):
        return [self.ctx.fleet, "up", "--no-tui"]

    def log_path(self, service):
        return os.path.join(self.wd, ".fleet", "logs", f"{service}.log")

    def find_keeper(self):
        """The keeper: a child of `fleet up` running our fleet copy, forked (it names
        itself fleet-keeper) or re-executed with the hidden flag."""
        if self.proc is None:
            return []
        for pid in procs.children_of(self.proc.pid):
            argv = procs.cmdline(pid) or []
            keeper = "__fleet_keeper" in argv or procs.comm(pid) == "fleet-keeper"
            if keeper and procs.exe(pid) == os.path.realpath(self.ctx.fleet):
                self._keepers.add(pid)
        return sorted(self._keepers)

    def extra_pids(self):
        self.find_keeper()
        # Only pids still running our fleet binary: a recycled pid is never signalled.
        return [
            p for p in self._keepers
            if procs.alive(p) and procs.exe(p) == os.path.realpath(self.ctx.fleet)
        ]


class Supervisord(Adapter):
    name = "supervisord"
    restart_note = "autorestart=true, startsecs=0 (restarts at once, no backoff)"
    stop_note = "stopwaitsecs=2, stopasgroup=killasgroup=true"
    log_note = "stdout_logfile per program, maxbytes=0 (no rotation)"

    def available(self):
        return None if os.path.exists(self._bin()) else "supervisord not installed"

    def _bin(self):
        return os.path.join(self.ctx.venv_bin, "supervisord")

    def version(self):
        return "supervisord " + _tool_version([self._bin(), "--version"])

    def write_config(self, wd, services):
        self.wd, self.services = wd, services
        os.makedirs(os.path.join(wd, "logs"), exist_ok=True)
        lines = [
            "[supervisord]",
            "nodaemon=true",
            f"logfile={wd}/supervisord.log",
            f"pidfile={wd}/supervisord.pid",
            f"childlogdir={wd}/logs",
            "minfds=1024",
            "",
        ]
        for svc in services:
            lines += [
                f"[program:{svc.name}]",
                "command=" + ini_value(" ".join(shlex.quote(a) for a in self.argv(svc))),
                "autostart=true",
                f"autorestart={'true' if svc.restart else 'false'}",
                "startsecs=0",
                "startretries=1000",
                f"stopwaitsecs={STOP_TIMEOUT_S}",
                "stopasgroup=true",
                "killasgroup=true",
                "redirect_stderr=true",
                f"stdout_logfile={wd}/logs/{svc.name}.log",
                "stdout_logfile_maxbytes=0",
                "",
            ]
        with open(os.path.join(wd, "supervisord.conf"), "w") as f:
            f.write("\n".join(lines))

    def command(self):
        return [self._bin(), "-n", "-c", os.path.join(self.wd, "supervisord.conf")]

    def log_path(self, service):
        return os.path.join(self.wd, "logs", f"{service}.log")


class Honcho(Adapter):
    name = "honcho"
    supports_restart = False
    restart_note = "n/a: honcho never restarts; when one process exits it stops them all"
    stop_note = "fixed 5 s SIGTERM->SIGKILL wait (KILL_WAIT, not configurable)"
    log_note = "its own stdout (prefixed lines) redirected to a file"

    def available(self):
        return None if os.path.exists(self._bin()) else "honcho not installed"

    def _bin(self):
        return os.path.join(self.ctx.venv_bin, "honcho")

    def version(self):
        return _tool_version([self._bin(), "--version"])

    def write_config(self, wd, services):
        self.wd, self.services = wd, services
        with open(os.path.join(wd, "Procfile"), "w") as f:
            for svc in services:
                # `exec`: honcho runs each line with /bin/sh -c; exec leaves no shell behind.
                f.write(f"{svc.name}: exec {' '.join(shlex.quote(a) for a in self.argv(svc))}\n")

    def command(self):
        return [self._bin(), "start", "-f", os.path.join(self.wd, "Procfile"), "--no-colour"]

    def stdout_path(self):
        return os.path.join(self.wd, "honcho.out")

    def log_path(self, service):
        return os.path.join(self.wd, "honcho.out")


class Circus(Adapter):
    name = "circus"
    restart_note = "respawn=true; respawns on its poll, check_delay=0.1 s (default 5 s)"
    stop_note = "graceful_timeout=2, stop_children=true"
    log_note = "stdout_stream FileStream per watcher"
    # A SIGTERM while circusd is still starting watchers is dropped ("arbiter is already
    # running arbiter_stop command"); teardown sends it again.
    resend_stop_every = 2.0

    def available(self):
        return None if os.path.exists(self._bin()) else "circus not installed"

    def _bin(self):
        return os.path.join(self.ctx.venv_bin, "circusd")

    def version(self):
        return "circusd " + _tool_version([self._bin(), "--version"])

    def write_config(self, wd, services):
        self.wd, self.services = wd, services
        os.makedirs(os.path.join(wd, "logs"), exist_ok=True)
        lines = [
            "[circus]",
            "check_delay = 0.1",
            f"endpoint = ipc://{wd}/ctl.sock",
            f"pubsub_endpoint = ipc://{wd}/pub.sock",
            # Empty: no UDP multicast discovery socket (nothing leaves loopback).
            "multicast_endpoint = ",
            "statsd = false",
            "warmup_delay = 0",
            "",
        ]
        for svc in services:
            lines += [
                f"[watcher:{svc.name}]",
                # circus's config has no %-interpolation: values go in as they are.
                f"cmd = {shlex.quote(self.argv(svc)[0])}",
                "args = " + " ".join(shlex.quote(a) for a in self.argv(svc)[1:]),
                "numprocesses = 1",
                f"respawn = {'true' if svc.restart else 'false'}",
                "max_retry = -1",
                f"graceful_timeout = {STOP_TIMEOUT_S}",
                "stop_children = true",
                "copy_env = true",
                "warmup_delay = 0",
                "stdout_stream.class = FileStream",
                f"stdout_stream.filename = {wd}/logs/{svc.name}.log",
                "stderr_stream.class = FileStream",
                f"stderr_stream.filename = {wd}/logs/{svc.name}.err.log",
                "",
            ]
        with open(os.path.join(wd, "circus.ini"), "w") as f:
            f.write("\n".join(lines))

    def command(self):
        return [
            self._bin(),
            "--log-output",
            os.path.join(self.wd, "circusd.log"),
            os.path.join(self.wd, "circus.ini"),
        ]

    def log_path(self, service):
        return os.path.join(self.wd, "logs", f"{service}.log")


ALL = {"fleet": Fleet, "supervisord": Supervisord, "honcho": Honcho, "circus": Circus}
ORDER = ["fleet", "supervisord", "honcho", "circus"]
