"""The containers figure: fleet, docker-compose and the bare engine API on the same
container workload.

The workload: N containers of one locally built image (FROM scratch, Debian's static
busybox; see engine.build_busybox_image), each running `busybox httpd -f -p 8080` and
publishing 8080 on its own host port on 127.0.0.1, all on one project network. busybox
httpd installs no SIGTERM handler, so as a container's PID 1 it ignores SIGTERM: with
`init` (fleet's `init = true`, compose's `init: true`) the engine's init is PID 1 and
passes SIGTERM on; without it only the SIGKILL at the 2 s stop timeout ends it.

Three tools, alternated within every repetition:
- fleet: `fleet up --no-tui` in the foreground, `fleet down`; `restart = "always"` with
  `backoff = { initial = "0s" }`, `stop_timeout = "2s"`.
- docker-compose: `docker-compose -p P up -d`, `docker-compose -p P down`;
  `restart: always`, `stop_grace_period: 2s`.
- engine API: the harness itself, no orchestrator: creates the network, then creates
  and starts every container at once (one thread each); down stops and removes them
  all at once, then the network. The floor under what any tool can do here; a variant
  removes with `force` (SIGKILL, no graceful stop): the floor of removal itself.

Times: "until all answer" ends at the last port's HTTP reply (Docker's proxy accepts a
connection even while nothing listens in the container, so a connect proves nothing);
"until all are gone" ends at the engine's own timestamp of the last container's
`destroy` event, read from its event stream.
"""

import os
import shutil
import signal
import subprocess
import threading
import time

from . import engine as eng
from . import net, procs

MS = "ms"
STOP_TIMEOUT_S = 2
HTTPD = ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
CONTAINER_PORT = 8080
# A tool whose containers do not all answer by then failed that run.
START_TIMEOUT = 90.0
# How long after a `docker kill` a replacement may take before the row says the tool
# does not restart it.
KILL_WAIT = 5.0


class Workload:
    def __init__(self, project, image, ports, init):
        self.project = project
        self.image = image
        self.ports = ports
        self.init = init

    def names(self):
        return [f"c{i:03d}" for i in range(len(self.ports))]


class Tool:
    """One tool's run of one workload in its own work dir."""

    name = "?"
    # Whether the tool brings a container back after `docker kill` (None: not asked).
    restarts = True

    def __init__(self, ctx, engine, wd, workload):
        self.ctx = ctx
        self.engine = engine
        self.wd = wd
        self.w = workload
        self.proc = None
        self._files = []

    # -- what every tool provides -------------------------------------------------------
    def configure(self):
        pass

    def launch(self):
        """Starts the tool's `up`; returns at once."""
        raise NotImplementedError

    def launch_failed(self):
        """True once the start is known to have failed (the tool exited with an error)."""
        return False

    def started(self):
        """After every port answered: waits for the `up` command itself where it returns
        (compose's `up -d`), so nothing of the start overlaps what is measured next."""

    def down(self, graceful=True):
        """The tool's own `down`; returns when it does."""
        raise NotImplementedError

    def labels(self):
        raise NotImplementedError

    def cleanup(self):
        """Whatever is left: the tool's processes (by pid and its own group), then its
        Docker objects (by label). Returns the names of objects it had to remove."""
        self._stop_process()
        for f in self._files:
            f.close()
        self._files = []
        return self.engine.sweep(self.labels())

    # -- shared plumbing ----------------------------------------------------------------
    def _open(self, name):
        f = open(os.path.join(self.wd, name), "ab")
        self._files.append(f)
        return f

    def _spawn(self, argv, log):
        out = self._open(log)
        return subprocess.Popen(
            argv, cwd=self.wd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            start_new_session=True,
        )

    def _run(self, argv, log, timeout=120):
        out = self._open(log)
        try:
            return subprocess.run(
                argv, cwd=self.wd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                timeout=timeout, start_new_session=True,
            ).returncode
        except subprocess.TimeoutExpired:
            return None

    def _stop_process(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            procs.kill_pid(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        # The tool leads its own group: whatever is left in it goes.
        procs.kill_group(self.proc.pid)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def log_tail(self, name, n=400):
        try:
            with open(os.path.join(self.wd, name), "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""


class FleetTool(Tool):
    name = "fleet"

    def __init__(self, *args):
        super().__init__(*args)
        self.keepers = set()
        self.binary = self.ctx.fleet

    def configure(self):
        lines = ["[project]", f'name = "{self.w.project}"', ""]
        argv = ", ".join(f'"{a}"' for a in HTTPD)
        for name, port in zip(self.w.names(), self.w.ports):
            lines += [
                f"[services.{name}]",
                f'image = "{self.w.image}"',
                f"command = [{argv}]",
                f'ports = ["{port}:{CONTAINER_PORT}"]',
                'restart = "always"',
                'backoff = { initial = "0s", max = "1s" }',
                "max_restarts = 1000",
                f'stop_timeout = "{STOP_TIMEOUT_S}s"',
            ]
            if self.w.init:
                lines.append("init = true")
            lines.append("")
        with open(os.path.join(self.wd, "fleet.toml"), "w") as f:
            f.write("\n".join(lines))

    def launch(self):
        self.proc = self._spawn([self.binary, "up", "--no-tui"], "fleet-up.out")

    def launch_failed(self):
        return self.proc is not None and self.proc.poll() is not None

    def down(self, graceful=True):
        self._find_keeper()
        rc = self._run([self.binary, "down"], "fleet-down.out")
        if rc != 0:
            self.ctx.debug(f"fleet down exited {rc}: {self.log_tail('fleet-down.out')!r}")
        return rc

    def labels(self):
        return [f"fleet.project={self.w.project}"]

    def _find_keeper(self):
        if self.proc is None:
            return
        fleet_real = os.path.realpath(self.binary)
        for pid in procs.children_of(self.proc.pid):
            if "__fleet_keeper" in (procs.cmdline(pid) or []) and procs.exe(pid) == fleet_real:
                self.keepers.add(pid)

    def cleanup(self):
        self._find_keeper()
        self._stop_process()
        # The keeper removes the run's containers once the supervisor is gone.
        fleet_real = os.path.realpath(self.binary)
        left = procs.wait_gone(self.keepers, 10.0, interval=0.01)
        for pid in left:
            if procs.exe(pid) == fleet_real:
                procs.kill_pid(pid)
        return super().cleanup()



class BaselineFleetTool(FleetTool):
    """`--fleet-baseline`: another fleet binary on the same workload, for before/after."""

    name = "fleet (baseline)"

    def __init__(self, *args):
        super().__init__(*args)
        self.binary = self.ctx.fleet_baseline


class ComposeTool(Tool):
    name = "docker-compose"
    restarts = False

    def configure(self):
        lines = ["version: \"2.4\"", "services:"]
        argv = ", ".join(f'"{a}"' for a in HTTPD)
        for name, port in zip(self.w.names(), self.w.ports):
            lines += [
                f"  {name}:",
                f"    image: {self.w.image}",
                f"    command: [{argv}]",
                f'    ports: ["127.0.0.1:{port}:{CONTAINER_PORT}"]',
                "    restart: always",
                f"    stop_grace_period: {STOP_TIMEOUT_S}s",
            ]
            if self.w.init:
                lines.append("    init: true")
        with open(os.path.join(self.wd, "docker-compose.yml"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def _argv(self, *args):
        return [shutil.which("docker-compose") or "docker-compose", "-p", self.w.project,
                "-f", os.path.join(self.wd, "docker-compose.yml"), *args]

    def launch(self):
        self.proc = self._spawn(self._argv("up", "-d"), "compose-up.out")

    def launch_failed(self):
        return self.proc is not None and self.proc.poll() not in (None, 0)

    def started(self):
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            pass

    def down(self, graceful=True):
        rc = self._run(self._argv("down"), "compose-down.out")
        if rc != 0:
            self.ctx.debug(f"docker-compose down exited {rc}: {self.log_tail('compose-down.out')!r}")
        return rc

    def labels(self):
        return [f"com.docker.compose.project={self.w.project}"]

    def cleanup(self):
        self._stop_process()
        if self.engine.containers(self.labels()) or self.engine.networks(self.labels()):
            self._run(self._argv("down", "-t", "0"), "compose-down.out")
        return super().cleanup()

    @staticmethod
    def available():
        if shutil.which("docker-compose") is None:
            return "docker-compose is not installed"
        return None

    @staticmethod
    def version():
        try:
            out = subprocess.run(["docker-compose", "version", "--short"], capture_output=True, text=True, timeout=60)
            return "docker-compose " + out.stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"docker-compose ? ({err})"


class EngineTool(Tool):
    """No orchestrator: the harness drives the engine API itself, everything at once."""

    name = "engine API"
    restarts = None

    def __init__(self, *args):
        super().__init__(*args)
        self.thread = None
        self.error = None
        self.ids = []
        self.network = self.w.project

    def _label_map(self):
        return {eng.RUN_LABEL: self.ctx.run_id, "fleet-bench.project": self.w.project}

    def labels(self):
        return [f"fleet-bench.project={self.w.project}"]

    def _create_and_start(self, name, port, out, index):
        body = {
            "Image": self.w.image,
            "Cmd": HTTPD,
            "Labels": self._label_map(),
            "ExposedPorts": {f"{CONTAINER_PORT}/tcp": {}},
            "StopSignal": "SIGTERM",
            "StopTimeout": STOP_TIMEOUT_S,
            "HostConfig": {
                "PortBindings": {f"{CONTAINER_PORT}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]},
                "RestartPolicy": {"Name": "no"},
                "NetworkMode": self.network,
                "Init": bool(self.w.init),
            },
            "NetworkingConfig": {"EndpointsConfig": {self.network: {"Aliases": [name]}}},
        }
        try:
            created = self.engine.ok("POST", f"/containers/create?name={self.w.project}-{name}", body)
            out[index] = created["Id"]
            self.engine.ok("POST", f"/containers/{created['Id']}/start")
        except eng.EngineError as err:
            self.error = str(err)

    def _up(self):
        try:
            self.engine.ok("POST", "/networks/create", {
                "Name": self.network, "Driver": "bridge", "Labels": self._label_map(),
            })
        except eng.EngineError as err:
            self.error = str(err)
            return
        ids = [None] * len(self.w.ports)
        threads = [
            threading.Thread(target=self._create_and_start, args=(name, port, ids, i))
            for i, (name, port) in enumerate(zip(self.w.names(), self.w.ports))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(START_TIMEOUT)
        self.ids = [i for i in ids if i]

    def launch(self):
        self.thread = threading.Thread(target=self._up, daemon=True)
        self.thread.start()

    def launch_failed(self):
        return self.error is not None

    def started(self):
        self.thread.join(START_TIMEOUT)

    def down(self, graceful=True):
        ids = [cid for cid, _, _ in self.engine.containers(self.labels())]

        def one(cid):
            if graceful:
                self.engine.stop(cid, STOP_TIMEOUT_S)
            self.engine.remove(cid, force=True)

        threads = [threading.Thread(target=one, args=(cid,)) for cid in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for nid, _ in self.engine.networks(self.labels()):
            self.engine.remove_network(nid)
        return 0


TOOLS = {"fleet": FleetTool, "docker-compose": ComposeTool}


class _Current:
    """What the run's emergency teardown (ctx.current) calls on Ctrl-C."""

    def __init__(self, tool):
        self.tool = tool

    def teardown(self):
        self.tool.cleanup()


def containers_figure(ctx, results, tool_names):
    """Cold start, `docker kill` / crash recovery and `down`, fleet vs docker-compose vs
    the engine API; see the module docs."""
    results.figure(
        "containers_cold",
        "Containers: cold start until all N published ports answer HTTP (ms; busybox httpd, one port each, init)",
        "target: fleet N=10 within 500 ms",
    )
    results.figure(
        "containers_kill",
        "Containers: one container killed until its port answers HTTP again (ms; 10 running, init)",
        "",
    )
    results.figure(
        "containers_down",
        "Containers: `down` until every container is gone (ms; the engine's destroy events)",
        "target: fleet N=10 with init within 500 ms",
    )
    results.figure(
        "containers_down_cmd",
        "Containers: `down` until the command returned (containers and network removed; ms)",
        "",
    )
    path = eng.socket_path()
    reason = None
    if path is None:
        reason = "DOCKER_HOST is not a unix:// socket"
    elif not os.path.exists(path):
        reason = f"no Docker engine socket at {path}"
    elif not eng.static_elf(eng.BUSYBOX):
        reason = f"{eng.BUSYBOX} is missing or not static (install busybox-static)"
    engine = eng.Engine(path)
    if reason is None:
        try:
            engine.version()
        except eng.EngineError as err:
            reason = f"the engine does not answer: {err}"
    classes = []
    for name in tool_names:
        cls = TOOLS.get(name)
        if cls is None:
            continue
        why = cls.available() if hasattr(cls, "available") else None
        if why:
            results.row("containers_cold", f"{name} N=10", MS).status = f"not available: {why}"
            continue
        classes.append(cls)
    if FleetTool in classes and ctx.fleet_baseline:
        classes.insert(classes.index(FleetTool) + 1, BaselineFleetTool)
    classes.append(EngineTool)
    if reason:
        for key in ("containers_cold", "containers_kill", "containers_down", "containers_down_cmd"):
            results.row(key, "all", MS).status = f"not measured: {reason}"
        ctx.say(f"  containers: not measured: {reason}")
        return {}
    versions = {}
    if ComposeTool in classes:
        versions["docker-compose"] = ComposeTool.version()
    try:
        server = engine.version()
        versions["Docker engine"] = f"{server.get('Version')} (API {server.get('ApiVersion')}, {server.get('Os')}/{server.get('Arch')})"
        info = engine.ok("GET", "/info", timeout=30) or {}
        versions["Docker engine"] += f", storage driver {info.get('Driver')}"
    except eng.EngineError:
        pass

    image = f"fleet-bench/httpd:{ctx.run_id}"
    ctx.say(f"  building {image} (FROM scratch, {eng.BUSYBOX})")
    try:
        engine.build_busybox_image(image, {eng.RUN_LABEL: ctx.run_id})
    except eng.EngineError as err:
        for key in ("containers_cold", "containers_kill", "containers_down", "containers_down_cmd"):
            results.row(key, "all", MS).status = f"not measured: {err}"
        return versions
    events = eng.Events(engine)
    try:
        sizes = [10] if ctx.opts.quick else [10, 50]
        for rep in range(ctx.opts.reps):
            for cls in classes:
                for n in sizes:
                    _one_run(ctx, results, engine, events, cls, rep, n, init=True)
                    time.sleep(0.5)
                _one_run(ctx, results, engine, events, cls, rep, 10, init=False)
                time.sleep(0.5)
                if cls is EngineTool:
                    _one_run(ctx, results, engine, events, cls, rep, 10, init=True, force=True)
                    time.sleep(0.5)
    finally:
        events.close()
        left = engine.sweep([f"{eng.RUN_LABEL}={ctx.run_id}"])
        if left:
            ctx.say(f"  containers: final sweep removed {left}")
        engine.remove_image(image)
    return versions


def _one_run(ctx, results, engine, events, cls, rep, n, init, force=False):
    """One launch: cold start; with init and N=10 also the kill rows; then `down`."""
    prefix = ctx.next_prefix()
    project = prefix.rstrip("-")
    wd = os.path.join(ctx.run_dir, f"containers-{cls.name.replace(' ', '-')}-{ctx.counter}")
    os.makedirs(wd)
    ports = net.free_port_range(n)
    tool = cls(ctx, engine, wd, Workload(project, f"fleet-bench/httpd:{ctx.run_id}", ports, init))
    variant = "init" if init else "no init"
    if force:
        variant = "rm -f (SIGKILL at once)"
    tag = f"{cls.name} N={n}"
    ctx.current = _Current(tool)
    try:
        tool.configure()
        t0 = time.monotonic()
        tool.launch()
        # Every port is tried again this often while it does not answer: 50 ports tried
        # every 3 ms would load the machine the engine is starting them on.
        retry = max(0.003, 0.0005 * n)
        answered, pending = net.wait_all_http(ports, START_TIMEOUT, stop_if=tool.launch_failed, retry=retry)
        if pending:
            why = "the start failed" if tool.launch_failed() else f"timeout {START_TIMEOUT:.0f}s"
            detail = getattr(tool, "error", None) or tool.log_tail("fleet-up.out" if isinstance(tool, FleetTool) else "compose-up.out")
            ctx.say(f"  containers {tag} rep {rep + 1}: {len(pending)}/{n} ports never answered ({why}): {detail!r}")
            results.row("containers_cold", tag, MS).note("some runs did not start")
            return
        cold = (max(answered.values()) - t0) * 1000
        tool.started()
        if init and not force:
            results.row("containers_cold", tag, MS).add(cold)
        said = f"cold {cold:.0f} ms"
        time.sleep(0.5)
        if init and not force and n == 10:
            said += _kills(ctx, results, engine, events, tool, rep)
        # down: the engine's last destroy of any container the tool ran.
        ids = [cid for cid, _, _ in engine.containers(tool.labels())]
        down_row = results.row("containers_down", f"{tag}, {variant}", MS)
        cmd_row = results.row("containers_down_cmd", f"{tag}, {variant}", MS)
        wall0, t0 = time.time(), time.monotonic()
        rc = tool.down(graceful=not force)
        cmd = (time.monotonic() - t0) * 1000
        last, missing = events.wait_for("destroy", ids, 30.0)
        if rc not in (0, None):
            down_row.note(f"the down command exited {rc}")
        if missing:
            down_row.note(f"{len(missing)} containers not destroyed within 30 s of down")
            said += f", down: {len(missing)} containers left"
        else:
            gone = (last - wall0) * 1000
            down_row.add(gone)
            cmd_row.add(cmd)
            said += f", down: all gone {gone:.0f} ms, command {cmd:.0f} ms"
        ctx.say(f"  containers {tag} {variant} rep {rep + 1}: {said}")
    finally:
        left = tool.cleanup()
        ctx.current = None
        if left:
            results.row("containers_down", f"{tag}, {variant}", MS).tally("teardown had to remove", "objects")
            ctx.debug(f"{tag}: teardown removed {left}")
        if not ctx.opts.keep_work:
            shutil.rmtree(wd, ignore_errors=True)


def _kills(ctx, results, engine, events, tool, rep):
    """`docker kill` of one container, then kill -9 of another's PID 1 from the host:
    each until its port answers HTTP again."""
    said = ""
    listing = {}
    for c in engine.listing(tool.labels(), all_=False):
        for port in c["published"]:
            listing[port] = c["Id"]
    ports = [p for p in tool.w.ports if p in listing]
    if len(ports) < 2:
        return ", kill: containers not found"
    for how, port in (("docker kill", ports[rep % len(ports)]), ("kill -9 of PID 1", ports[(rep + 1) % len(ports)])):
        row = results.row("containers_kill", f"{tool.name}: {how}", MS)
        if tool.restarts is None:
            row.status = "n/a"
            row.note("no orchestrator: nothing restarts a container")
            continue
        cid = listing[port]
        if how == "docker kill":
            t0 = time.monotonic()
            engine.kill(cid, "SIGKILL")
        else:
            found = engine.inspect(cid) or {}
            pid = (found.get("State") or {}).get("Pid")
            if not pid:
                row.note("could not find a container's PID 1")
                continue
            t0 = time.monotonic()
            procs.kill_pid(pid, signal.SIGKILL)
        # Only after its death can an answer come from a replacement.
        _, missing = events.wait_for("die", [cid], 10.0)
        if missing:
            row.note("the killed container never died")
            continue
        answered, _ = net.wait_all_http([port], KILL_WAIT)
        if port in answered:
            took = (answered[port] - t0) * 1000
            row.add(took)
            said += f", {how}: back in {took:.0f} ms"
        else:
            state = (engine.inspect(cid) or {}).get("State") or {}
            row.status = "n/a"
            row.note(
                f"not restarted within {KILL_WAIT:.0f} s (the container stays {state.get('Status', '?')}: "
                "the engine's restart policy leaves a container stopped by `docker kill` alone)"
                if how == "docker kill" else f"not restarted within {KILL_WAIT:.0f} s"
            )
            said += f", {how}: not back within {KILL_WAIT:.0f} s"
        time.sleep(0.3)
    return said
