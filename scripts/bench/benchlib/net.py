"""Loopback networking: free port ranges, accept polling, a tiny HTTP GET, a load
generator. Every address used here is 127.0.0.1."""

import errno
import random
import selectors
import socket
import threading
import time

HOST = "127.0.0.1"
# Below the kernel's ephemeral range (usually 32768-60999), so outgoing connections of
# the pollers never take a port a service is about to bind.
PORT_LOW, PORT_HIGH = 12000, 32000


def port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Same as Rust's std TcpListener and Python's servers: SO_REUSEADDR, so a port in
        # TIME_WAIT counts as free, as it is for the services.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port_range(count, rng=random):
    """`count` consecutive free ports starting at a random base."""
    for _ in range(200):
        base = rng.randrange(PORT_LOW, PORT_HIGH - count)
        if all(port_free(p) for p in range(base, base + count)):
            return list(range(base, base + count))
    raise RuntimeError(f"no {count} consecutive free ports found")


def try_connect(port, timeout=0.05):
    """One blocking connect on loopback; True if accepted."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((HOST, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_all_accept(ports, timeout, stop_if=None, pause=0.0005):
    """Polls every port with non-blocking connects until each has accepted once.

    Returns (elapsed-free completion time as time.monotonic() of the last accept, set of
    ports that never accepted). `stop_if()` returning True aborts early (the tool died).
    """
    pending = set(ports)
    inflight = {}  # socket -> port
    sel = selectors.DefaultSelector()
    last_accept = None
    deadline = time.monotonic() + timeout
    try:
        while pending and time.monotonic() < deadline:
            for port in list(pending):
                if port in inflight.values():
                    continue
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                err = s.connect_ex((HOST, port))
                if err == 0:
                    last_accept = time.monotonic()
                    pending.discard(port)
                    s.close()
                elif err in (errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY):
                    inflight[s] = port
                    sel.register(s, selectors.EVENT_WRITE)
                else:
                    s.close()
            if inflight:
                for key, _ in sel.select(timeout=0):
                    s = key.fileobj
                    port = inflight.pop(s)
                    sel.unregister(s)
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                        last_accept = time.monotonic()
                        pending.discard(port)
                    s.close()
            if not pending:
                break
            if stop_if is not None and stop_if():
                break
            if pause:
                time.sleep(pause)
    finally:
        for s in list(inflight):
            sel.unregister(s)
            s.close()
        sel.close()
    return last_accept, pending


def http_get(port, path="/", timeout=1.0):
    """(status, body) or raises OSError. One request per connection."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1."):
        raise OSError("malformed HTTP reply")
    status = int(head.split(b" ", 2)[1])
    return status, body


def get_pid(port, timeout=1.0):
    """The pid the helper reports on GET /pid, or None."""
    try:
        status, body = http_get(port, "/pid", timeout=timeout)
    except (OSError, ValueError, IndexError):
        return None
    if status != 200:
        return None
    try:
        return int(body.strip())
    except ValueError:
        return None


def wait_new_pid(port, old_pid, timeout, interval=0.0):
    """Polls until a process other than old_pid accepts on port and answers GET /pid.

    Returns (monotonic time the successful connect completed, new pid) or (None, None).
    The connect time is what counts: the GET only proves who accepted.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(1.0)
        try:
            s.connect((HOST, port))
            t_conn = time.monotonic()
            s.sendall(f"GET /pid HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
            raw = b""
            while True:
                data = s.recv(4096)
                if not data:
                    break
                raw += data
            head, _, body = raw.partition(b"\r\n\r\n")
            if head.startswith(b"HTTP/1.1 200"):
                pid = int(body.strip())
                if pid != old_pid:
                    return t_conn, pid
        except (OSError, ValueError):
            pass
        finally:
            s.close()
        if interval:
            time.sleep(interval)
    return None, None


class LoadGenerator:
    """Sends GET / to a port at a fixed rate from a few worker threads, a new connection
    per request, and counts failures (refused, reset, timeout, non-200). Bounded: it stops
    after `duration` seconds by itself."""

    def __init__(self, port, rate=200, duration=10.0, workers=8, timeout=2.0):
        self.port = port
        self.rate = rate
        self.duration = duration
        self.workers = workers
        self.timeout = timeout
        self.lock = threading.Lock()
        self.sent = 0
        self.failed = 0
        self.errors = {}
        self.pids = {}
        self.failures_at = []
        self._threads = []
        self.t0 = None

    def _worker(self, index):
        # Worker i takes requests i, i+workers, ... on an absolute schedule.
        interval = 1.0 / self.rate
        n = index
        total = int(self.rate * self.duration)
        while n < total:
            due = self.t0 + n * interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ok, why, pid = False, None, None
            try:
                status, body = http_get(self.port, "/", timeout=self.timeout)
                ok = status == 200
                if ok:
                    # "hello from NAME pid PID"
                    words = body.split()
                    if b"pid" in words:
                        pid = int(words[words.index(b"pid") + 1])
                else:
                    why = f"HTTP {status}"
            except OSError as err:
                why = type(err).__name__
            except ValueError:
                why = "bad reply"
            with self.lock:
                self.sent += 1
                if not ok:
                    self.failed += 1
                    self.errors[why] = self.errors.get(why, 0) + 1
                    self.failures_at.append(round(time.monotonic() - self.t0, 3))
                elif pid is not None:
                    self.pids[pid] = self.pids.get(pid, 0) + 1
            n += self.workers

    def start(self):
        self.t0 = time.monotonic()
        for i in range(self.workers):
            t = threading.Thread(target=self._worker, args=(i,), daemon=True)
            t.start()
            self._threads.append(t)

    def join(self):
        for t in self._threads:
            t.join(self.duration + self.timeout + 5)


def wait_all_http(ports, timeout, stop_if=None, retry=0.003, attempt_timeout=1.0, per_port=64):
    """Until every port answers an HTTP request (`GET /`, any status): a published
    container port is accepted by Docker's proxy even while nothing listens behind it,
    so an accepted connect alone proves nothing. Every port is tried concurrently with
    non-blocking sockets; a failed try (refused, or the proxy closing without a reply)
    is tried again `retry` seconds later.

    A new try does not wait for an earlier one that hangs: while a container's network
    is being set up, Docker's proxy may accept and then wait on a connection to an
    address that does not answer yet, and the reply to a later try is what counts. Up
    to `per_port` tries of one port are in flight at once; each is given up after
    `attempt_timeout`.

    Returns ({port: time.monotonic() the reply's first bytes arrived}, set of ports that
    never answered). `stop_if()` returning True aborts early.
    """
    request = b"GET / HTTP/1.0\r\n\r\n"
    pending = set(ports)
    answered = {}
    next_try = {port: 0.0 for port in ports}
    inflight = {port: set() for port in ports}
    conns = {}  # socket -> [port, phase, received, started]
    sel = selectors.DefaultSelector()
    deadline = time.monotonic() + timeout

    def drop(s):
        port = conns.pop(s)[0]
        sel.unregister(s)
        s.close()
        inflight[port].discard(s)

    try:
        while pending and time.monotonic() < deadline:
            now = time.monotonic()
            for port in list(pending):
                if next_try[port] > now or len(inflight[port]) >= per_port:
                    continue
                next_try[port] = now + retry
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                err = s.connect_ex((HOST, port))
                if err in (0, errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY):
                    conns[s] = [port, "connect", b"", now]
                    inflight[port].add(s)
                    sel.register(s, selectors.EVENT_WRITE)
                else:
                    s.close()
            for key, _ in sel.select(timeout=0.001):
                s = key.fileobj
                if s not in conns:
                    continue  # its port answered on another try in this round
                port, phase, received, _ = conns[s]
                now = time.monotonic()
                if phase == "connect":
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                        drop(s)
                        continue
                    try:
                        s.send(request)
                    except OSError:
                        drop(s)
                        continue
                    conns[s][1] = "read"
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                try:
                    data = s.recv(64)
                except OSError:
                    data = b""
                received += data
                if received.startswith(b"HTTP/"):
                    answered[port] = now
                    pending.discard(port)
                    for other in list(inflight[port]):
                        drop(other)
                elif not data or len(received) >= 5:
                    drop(s)
                else:
                    conns[s][2] = received
            now = time.monotonic()
            for s, (port, _, _, started) in list(conns.items()):
                if now - started > attempt_timeout:
                    drop(s)
            if stop_if is not None and stop_if():
                break
    finally:
        for s in list(conns):
            sel.unregister(s)
            s.close()
        sel.close()
    return answered, pending
