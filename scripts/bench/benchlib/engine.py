"""A small Docker engine API client over its Unix socket (standard library only), for the
containers figure: the benchmark image, container listings by label, the engine's
event stream (its own timestamps say when a container died or was removed), and the
"engine API" floor, which drives the engine directly with no orchestrator in between.

Nothing here pulls from a registry: the image is built FROM scratch with Debian's
static /bin/busybox (package busybox-static). Every object the harness creates is
labelled `fleet-bench.run=<run id>` and removed by that label at the end.
"""

import http.client
import io
import json
import os
import socket
import struct
import tarfile
import threading
import time
import urllib.parse

SOCKET = "/var/run/docker.sock"
BUSYBOX = "/bin/busybox"
RUN_LABEL = "fleet-bench.run"


def socket_path():
    """The engine's socket: DOCKER_HOST if it is a unix:// address, else the default.
    None when DOCKER_HOST points elsewhere (tcp://): not supported by this harness."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host:
        return SOCKET
    if host.startswith("unix://"):
        return host[len("unix://"):]
    return None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class EngineError(Exception):
    pass


class Engine:
    """One request per connection (the engine is local: a connect costs microseconds),
    so calls from several threads at once need no locking."""

    def __init__(self, path=None):
        self.path = path or socket_path()

    def request(self, method, url, body=None, timeout=120.0, raw=None, headers=None):
        """(status, parsed JSON or None). `raw` bytes are sent as they are (a build
        context); `body` is JSON-encoded."""
        conn = _UnixConnection(self.path, timeout)
        try:
            hdrs = dict(headers or {})
            data = raw
            if body is not None:
                data = json.dumps(body).encode()
                hdrs["Content-Type"] = "application/json"
            conn.request(method, url, body=data, headers=hdrs)
            resp = conn.getresponse()
            payload = resp.read()
        except OSError as err:
            raise EngineError(f"{method} {url}: {err}") from err
        finally:
            conn.close()
        parsed = None
        if payload:
            try:
                parsed = json.loads(payload)
            except ValueError:
                # A build streams one JSON object per line.
                parsed = [json.loads(line) for line in payload.splitlines() if line.strip().startswith(b"{")]
        return resp.status, parsed

    def ok(self, method, url, body=None, accept=(200, 201, 204, 304), **kw):
        status, parsed = self.request(method, url, body, **kw)
        if status not in accept:
            msg = parsed.get("message") if isinstance(parsed, dict) else parsed
            raise EngineError(f"{method} {url}: HTTP {status}: {msg}")
        return parsed

    # -- facts -------------------------------------------------------------------------
    def version(self):
        return self.ok("GET", "/version", timeout=10)

    # -- the benchmark image -------------------------------------------------------------
    def build_busybox_image(self, tag, labels):
        """Builds `tag` FROM scratch: /bin/busybox and a one-file /www for httpd."""
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as tar:
            dockerfile = b"FROM scratch\nCOPY busybox /bin/busybox\nCOPY www /www\n"
            _add_bytes(tar, "Dockerfile", dockerfile, 0o644)
            _add_bytes(tar, "www/index.html", b"fleet bench\n", 0o644)
            tar.add(BUSYBOX, arcname="busybox")
        query = urllib.parse.urlencode({
            "t": tag,
            "labels": json.dumps(labels),
            "rm": "1",
            "forcerm": "1",
        })
        lines = self.ok(
            "POST", f"/build?{query}", raw=context.getvalue(),
            headers={"Content-Type": "application/x-tar"}, timeout=300,
        )
        for line in lines or []:
            if isinstance(line, dict) and line.get("error"):
                raise EngineError(f"image build failed: {line['error']}")

    def remove_image(self, tag):
        self.request("DELETE", f"/images/{urllib.parse.quote(tag, safe='')}?force=1", timeout=60)

    # -- containers and networks ---------------------------------------------------------
    def containers(self, labels, all_=True):
        """[(id, name, state)] of containers carrying every `key=value` in labels."""
        return [(c["Id"], c["name"], c.get("State")) for c in self.listing(labels, all_)]

    def listing(self, labels, all_=True):
        """The engine's container list entries carrying every `key=value` in labels,
        each with `name` (without the slash) and `published` (its host ports)."""
        filters = json.dumps({"label": list(labels)})
        query = urllib.parse.urlencode({"all": "1" if all_ else "0", "filters": filters})
        out = []
        for c in self.ok("GET", f"/containers/json?{query}", timeout=30) or []:
            c["name"] = (c.get("Names") or ["?"])[0].lstrip("/")
            c["published"] = sorted({p["PublicPort"] for p in c.get("Ports") or [] if p.get("PublicPort")})
            out.append(c)
        return out

    def inspect(self, ident):
        status, parsed = self.request("GET", f"/containers/{ident}/json", timeout=30)
        return parsed if status == 200 else None

    def kill(self, ident, signal="SIGKILL"):
        return self.request("POST", f"/containers/{ident}/kill?signal={signal}", timeout=30)[0]

    def stop(self, ident, seconds):
        return self.request("POST", f"/containers/{ident}/stop?t={seconds}", timeout=seconds + 60)[0]

    def remove(self, ident, force=True):
        query = "force=1&v=1" if force else "v=1"
        return self.request("DELETE", f"/containers/{ident}?{query}", timeout=120)[0]

    def networks(self, labels):
        filters = json.dumps({"label": list(labels)})
        return [(n["Id"], n["Name"]) for n in
                self.ok("GET", f"/networks?filters={urllib.parse.quote(filters)}", timeout=30) or []]

    def remove_network(self, ident):
        return self.request("DELETE", f"/networks/{ident}", timeout=60)[0]

    def sweep(self, labels):
        """Force-removes every container, then every network, carrying `labels`.
        Returns what it removed (names)."""
        removed = []
        victims = self.containers(labels)
        threads = [threading.Thread(target=self.remove, args=(cid,)) for cid, _, _ in victims]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        removed += [name for _, name, _ in victims]
        for nid, name in self.networks(labels):
            self.remove_network(nid)
            removed.append(name)
        return removed


def _add_bytes(tar, name, data, mode):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def static_elf(path):
    """True if `path` is an ELF executable without a program interpreter (static): the
    only kind that runs alone in a FROM scratch image."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2:
                return False
            endian = "<" if head[5] == 1 else ">"
            phoff, = struct.unpack(endian + "Q", head[32:40])
            phentsize, phnum = struct.unpack(endian + "HH", head[54:58])
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    for i in range(phnum):
        p_type, = struct.unpack(endian + "I", table[i * phentsize: i * phentsize + 4])
        if p_type == 3:  # PT_INTERP: dynamically linked
            return False
    return True


class Events:
    """Follows the engine's container events in a thread. Each event keeps the engine's
    own timestamp (`timeNano`, the wall clock), so a destroy is timed where it happened,
    not when the harness got to read it."""

    def __init__(self, engine, since=None):
        self.engine = engine
        self.lock = threading.Lock()
        self.events = []  # (time.time() seconds, action, id, attributes)
        self.error = None
        self._conn = None
        self._ready = threading.Event()
        self._since = since if since is not None else time.time()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self):
        filters = json.dumps({"type": ["container"]})
        query = urllib.parse.urlencode({"since": f"{self._since:.9f}", "filters": filters})
        conn = _UnixConnection(self.engine.path, None)
        self._conn = conn
        try:
            conn.request("GET", f"/events?{query}")
            resp = conn.getresponse()
            self._ready.set()
            buf = b""
            while True:
                chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(1)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if not line.strip():
                        continue
                    try:
                        ev = json.loads(line)
                    except ValueError:
                        continue
                    at = ev.get("timeNano", 0) / 1e9 or ev.get("time", 0)
                    actor = ev.get("Actor") or {}
                    with self.lock:
                        self.events.append((at, ev.get("Action") or ev.get("status"), actor.get("ID") or ev.get("id"), actor.get("Attributes") or {}))
        except (OSError, http.client.HTTPException) as err:
            self.error = str(err)
        finally:
            self._ready.set()

    def close(self):
        conn = self._conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)

    def last(self, action, ids):
        """The latest time `action` happened to each of `ids`: (max time, ids without it)."""
        seen = {}
        with self.lock:
            for at, act, ident, _ in self.events:
                if act == action and ident in ids:
                    seen[ident] = at
        missing = [i for i in ids if i not in seen]
        return (max(seen.values()) if seen else None), missing

    def wait_for(self, action, ids, timeout):
        """Waits until `action` was seen for every one of `ids`; returns last()."""
        deadline = time.monotonic() + timeout
        while True:
            at, missing = self.last(action, ids)
            if not missing or time.monotonic() > deadline:
                return at, missing
            time.sleep(0.005)
