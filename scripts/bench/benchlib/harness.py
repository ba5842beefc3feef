"""The run context, one tool run in its own work dir, teardown, and result rows."""

import os
import shutil
import signal
import statistics
import time

from . import procs


class Ctx:
    """Everything a measurement needs: paths of this run's binary copies, the venv, the
    run id that tags every workload process, options."""

    def __init__(self, bench_dir, run_id, fleet, helper, venv_bin, opts):
        self.bench_dir = bench_dir
        self.run_id = run_id
        self.run_dir = os.path.join(bench_dir, "work", run_id)
        self.fleet = fleet
        self.helper = helper
        self.venv_bin = venv_bin
        self.opts = opts
        self.owned = procs.Owned(helper)
        self.counter = 0
        # --fleet-baseline: a second fleet binary for the containers figure.
        self.fleet_baseline = None
        self.log = open(os.path.join(self.run_dir, "harness.log"), "a")
        self.current = None  # the ToolRun being measured, for emergency teardown

    @property
    def tag(self):
        return f"bench-{self.run_id}-"

    def next_prefix(self):
        self.counter += 1
        return f"bench-{self.run_id}-m{self.counter}-"

    def say(self, text):
        line = f"[{time.strftime('%H:%M:%S')}] {text}"
        print(line, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def debug(self, text):
        self.log.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
        self.log.flush()


class ToolRun:
    """One launch of one tool in a fresh work dir. Use as a context manager: on exit the
    tool is stopped (gracefully, then SIGKILL of its process group) and every workload
    process of this run is verified gone (survivors are SIGKILLed by exact pid)."""

    def __init__(self, ctx, adapter_cls, figure):
        self.ctx = ctx
        self.adapter = adapter_cls(ctx)
        self.prefix = ctx.next_prefix()
        self.wd = os.path.join(ctx.run_dir, f"{figure}-{self.adapter.name}-{ctx.counter}")
        os.makedirs(self.wd)
        self.leftovers = 0
        self.leftover_names = []
        self.forced = False
        self.t_launch = None

    def tag(self, name):
        return self.prefix + name

    def report_leftovers(self, row):
        """Notes on the row which workload processes teardown had to kill."""
        for name in self.leftover_names:
            row.tally("teardown had to kill", name)
        if self.forced:
            row.tally("tool did not stop gracefully in time, SIGKILLed", "runs")

    def __enter__(self):
        self.ctx.current = self
        return self

    def configure(self, services):
        self.adapter.write_config(self.wd, services)

    def start(self):
        self.t_launch = time.monotonic()
        self.adapter.start()
        self.ctx.debug(f"started {self.adapter.name} pid {self.adapter.proc.pid} in {self.wd}")
        return self.t_launch

    def __exit__(self, *exc):
        # If teardown itself is interrupted, ctx.current stays set and the run's final
        # cleanup tears this run down again.
        self.teardown()
        self.ctx.current = None
        if not self.ctx.opts.keep_work:
            shutil.rmtree(self.wd, ignore_errors=True)
        return False

    def teardown(self):
        a = self.adapter
        if a.proc is None:
            return
        extra = a.extra_pids()
        if not a.exited():
            a.stop()
            deadline = time.monotonic() + a.stop_grace
            while not a.wait(min(a.resend_stop_every, max(0.0, deadline - time.monotonic()))):
                if time.monotonic() >= deadline:
                    self.forced = True
                    self.ctx.debug(f"{a.name}: no graceful exit in {a.stop_grace}s, SIGKILL group")
                    break
                # circus drops a SIGTERM that arrives while it is still starting watchers.
                self.ctx.debug(f"{a.name}: still running, stop again")
                a.stop()
        # The tool leads its own process group: SIGKILL whatever is left in it. ESRCH if
        # the group is empty; the pgid cannot have been reused while members remain.
        procs.kill_group(a.proc.pid)
        a.wait(10)
        # fleet's keeper cleans up on its own when the supervisor goes; give it a moment.
        left_extra = procs.wait_gone(extra, 3.0, interval=0.01)
        for pid in left_extra:
            if pid in a.extra_pids():
                procs.kill_pid(pid)
        leftovers = self.ctx.owned.find(self.prefix)
        self.leftovers = len(leftovers)
        self.leftover_names = []
        for argv in leftovers.values():
            name = argv[argv.index("--name") + 1] if "--name" in argv[:-1] else "?"
            self.leftover_names.append(name.removeprefix(self.prefix))
        if leftovers:
            self.ctx.debug(f"{a.name}: killing {len(leftovers)} leftover workload pids")
            for pid in leftovers:
                procs.kill_pid(pid)
            procs.wait_gone(leftovers, 5.0, interval=0.01)
        a.close_files()


def run_sweep(ctx):
    """Kills (by exact pid) every workload or keeper process of this run still alive."""
    killed = []
    fleets = {os.path.realpath(f) for f in (ctx.fleet, ctx.fleet_baseline) if f}
    for pid, _ in ctx.owned.find(ctx.tag).items():
        procs.kill_pid(pid)
        killed.append(pid)
    for pid in procs.pids():
        if procs.exe(pid) in fleets and procs.alive(pid):
            procs.kill_pid(pid)
            killed.append(pid)
    procs.wait_gone(killed, 5.0, interval=0.01)
    return killed


def sweep_stale_runs(bench_dir, current_run):
    """Work dirs of earlier runs whose harness is gone: kill (by exact pid) processes whose
    executable is one of that run's binary copies or whose argv names a file in that run's
    dir (its supervisord/circus/honcho), then remove the dir."""
    work = os.path.join(bench_dir, "work")
    if not os.path.isdir(work):
        return []
    killed = []
    for run in os.listdir(work):
        run_dir = os.path.join(work, run)
        if run == current_run or not os.path.isdir(run_dir):
            continue
        owner = procs.read_pidfile(os.path.join(run_dir, "owner.pid"))
        if owner is not None and procs.alive(owner):
            argv = procs.cmdline(owner) or []
            if any("bench" in a for a in argv):
                continue  # another harness is running
        bin_dir = os.path.realpath(os.path.join(run_dir, "bin")) + os.sep
        run_real = os.path.realpath(run_dir) + os.sep
        victims = []
        for pid in procs.pids():
            if pid == os.getpid():
                continue
            path = procs.exe(pid) or ""
            argv = procs.cmdline(pid) or []
            if path.removesuffix(" (deleted)").startswith(bin_dir) or any(
                a.startswith(run_real) for a in argv
            ):
                victims.append(pid)
        for pid in victims:
            procs.kill_pid(pid)
        procs.wait_gone(victims, 5.0, interval=0.01)
        killed += victims
        shutil.rmtree(run_dir, ignore_errors=True)
    return killed


class Row:
    """One line of a figure's table: samples of one tool (or one variant)."""

    def __init__(self, figure, tool, unit):
        self.figure = figure
        self.tool = tool
        self.unit = unit
        self.samples = []
        self.notes = []
        self.status = None  # None = measured; else "n/a (...)" / "not measured ..." text
        self.extra = []  # per-sample details (e.g. lost/reordered counts)
        self.tallies = {}  # label -> {item: count}, rendered as one note each
        self.ranges = {}  # label -> (values, unit), rendered as "label: min-max unit"

    def add(self, value):
        if value is not None:
            self.samples.append(value)

    def note(self, text):
        if text and text not in self.notes:
            self.notes.append(text)

    def tally(self, label, item):
        items = self.tallies.setdefault(label, {})
        items[item] = items.get(item, 0) + 1

    def value_range(self, label, value, unit):
        self.ranges.setdefault(label, ([], unit))[0].append(value)

    def all_notes(self):
        notes = list(self.notes)
        for label, items in self.tallies.items():
            notes.append(f"{label}: " + ", ".join(f"{k} x{v}" for k, v in sorted(items.items())))
        for label, (values, unit) in self.ranges.items():
            lo, hi = min(values), max(values)
            span = f"{lo:.1f}" if f"{lo:.1f}" == f"{hi:.1f}" else f"{lo:.1f}-{hi:.1f}"
            notes.append(f"{label}: {span} {unit}")
        return notes

    def summary(self):
        if not self.samples:
            return None
        return {
            "median": statistics.median(self.samples),
            "min": min(self.samples),
            "max": max(self.samples),
            "n": len(self.samples),
        }

    def to_json(self):
        return {
            "figure": self.figure,
            "tool": self.tool,
            "unit": self.unit,
            "samples": self.samples,
            "summary": self.summary(),
            "status": self.status,
            "notes": self.all_notes(),
            "extra": self.extra,
        }


class Results:
    def __init__(self):
        self.rows = {}  # (figure, tool) -> Row
        self.figures = []  # (figure key, title, target text)
        self.warnings = []  # shown at the top of the report

    def figure(self, key, title, target=""):
        if key not in [f[0] for f in self.figures]:
            self.figures.append((key, title, target))

    def row(self, figure, tool, unit):
        key = (figure, tool)
        if key not in self.rows:
            self.rows[key] = Row(figure, tool, unit)
        return self.rows[key]

    def rows_of(self, figure):
        return [r for (f, _), r in self.rows.items() if f == figure]


def ignore_signals():
    """For the final cleanup: a second Ctrl-C must not leave processes behind."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def install_signal_handlers():
    """SIGINT/SIGTERM/SIGHUP end the run: the current ToolRun tears down. SIGINT is set
    explicitly because a shell starts background jobs with it ignored."""

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)
