"""Process facts from /proc, and the only code that sends signals.

Nothing here looks processes up by name. Cleanup kills exact pids that are provably
ours: their executable is one of this run's binary copies (work/<run>/bin/...) and
their argv carries this run's unique `bench-<run>-` tag, or they are the tools this
harness started itself (their pid, or their process group, which they lead because
they were started with start_new_session=True).
"""

import os
import signal
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def pids():
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            out.append(int(entry))
    return out


def cmdline(pid):
    """argv of pid as a list of str, or None if gone / a zombie / a kernel thread."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    if not raw:
        return None
    return [part.decode("utf-8", "replace") for part in raw.rstrip(b"\0").split(b"\0")]


def comm(pid):
    """The process's name (/proc/PID/comm), or None if gone."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def exe(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def stat(pid):
    """dict(state, ppid, pgrp, session, utime, stime, starttime, threads) or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    rest = raw[raw.rfind(")") + 2:].split()
    return {
        "state": rest[0],
        "ppid": int(rest[1]),
        "pgrp": int(rest[2]),
        "session": int(rest[3]),
        "utime": int(rest[11]),
        "stime": int(rest[12]),
        "threads": int(rest[17]),
        "starttime": int(rest[19]),
    }


def alive(pid):
    """True if pid exists and is not a zombie (a zombie is dead, just not reaped)."""
    st = stat(pid)
    return st is not None and st["state"] not in ("Z", "X")


def start_time(pid):
    st = stat(pid)
    return None if st is None else st["starttime"]


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_ticks(pid):
    """utime+stime of the process itself (all its threads, dead ones included; children
    excluded: those are in cutime/cstime), in clock ticks."""
    st = stat(pid)
    return None if st is None else st["utime"] + st["stime"]


def cpu_ns_by_thread(pid):
    """{tid: ns on CPU} from /proc/<pid>/task/*/schedstat: nanosecond precision, but only
    for threads alive now."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[int(tid)] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


def children_of(pid):
    """Direct children of pid (scanning /proc)."""
    out = []
    for p in pids():
        st = stat(p)
        if st is not None and st["ppid"] == pid:
            out.append(p)
    return out


def descendants_of(pid):
    by_parent = {}
    for p in pids():
        st = stat(p)
        if st is not None:
            by_parent.setdefault(st["ppid"], []).append(p)
    out, todo = [], [pid]
    while todo:
        for child in by_parent.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class Owned:
    """Recognises the workload processes of this run: executable is our helper copy (or
    argv[0] is) AND some argv element starts with the tag prefix."""

    def __init__(self, helper_path):
        self.helper_path = os.path.realpath(helper_path)

    def is_ours(self, pid, prefix):
        argv = cmdline(pid)
        if not argv:
            return False
        if not any(arg.startswith(prefix) for arg in argv):
            return False
        path = exe(pid)
        if path is not None:
            path = path.removesuffix(" (deleted)")
            return os.path.realpath(path) == self.helper_path
        return os.path.realpath(argv[0]) == self.helper_path

    def find(self, prefix):
        """{pid: argv} of live workload processes carrying prefix."""
        out = {}
        for pid in pids():
            if pid == os.getpid():
                continue
            if self.is_ours(pid, prefix) and alive(pid):
                out[pid] = cmdline(pid)
        return out

    def pid_named(self, name):
        """The live workload process whose `--name` is exactly name, or None."""
        for pid in pids():
            argv = cmdline(pid)
            if not argv or name not in argv:
                continue
            for i, arg in enumerate(argv[:-1]):
                if arg == "--name" and argv[i + 1] == name and self.is_ours(pid, name):
                    if alive(pid):
                        return pid
        return None


def kill_pid(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def kill_group(pgid, sig=signal.SIGKILL):
    """Signal a process group that this harness created (pgid = pid of a tool we started
    with start_new_session=True)."""
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def wait_gone(pids_, timeout, interval=0.001):
    """Waits until none of pids_ is alive; returns the set still alive at the deadline."""
    deadline = time.monotonic() + timeout
    remaining = set(pids_)
    while remaining:
        remaining = {p for p in remaining if alive(p)}
        if not remaining or time.monotonic() >= deadline:
            break
        time.sleep(interval)
    return remaining


def read_pidfile(path, timeout=0.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path) as f:
                text = f.read().strip()
            if text:
                return int(text)
        except (OSError, ValueError):
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)
