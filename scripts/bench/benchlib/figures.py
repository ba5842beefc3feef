"""The measurements. Each figure alternates the tools within every repetition and runs
each tool fresh in its own work dir (harness.ToolRun)."""

import os
import re
import signal
import subprocess
import time

from . import net, procs
from .adapters import Svc
from .harness import ToolRun

MS = "ms"


def plain_services(run, ports, prefix="s"):
    return [
        Svc(name=f"{prefix}{i:03d}", args=["--port", str(p), "--name", run.tag(f"{prefix}{i:03d}")], port=p)
        for i, p in enumerate(ports)
    ]


def start_and_wait(ctx, run, ports, timeout=60.0):
    """Starts the tool; returns seconds from launch until all ports accept, or None."""
    t0 = run.start()
    last, pending = net.wait_all_accept(ports, timeout, stop_if=run.adapter.exited)
    if pending:
        why = "tool exited" if run.adapter.exited() else f"timeout {timeout:.0f}s"
        ctx.say(
            f"  {run.adapter.name}: {len(pending)}/{len(ports)} ports never accepted ({why}); "
            f"stderr: {run.adapter.stderr_tail(300)!r}"
        )
        return None
    return last - t0


def each_rep(ctx, tools):
    for rep in range(ctx.opts.reps):
        for cls in tools:
            yield rep, cls


# ---------------------------------------------------------------------------------------
# 0. baseline: the workload's own start cost, no supervisor


def baseline(ctx, results):
    """The harness spawns the helper itself and polls its port: what any tool's start or
    restart costs at least on this machine, right now."""
    results.figure(
        "baseline",
        "Baseline: the harness itself spawns the helper until it accepts and answers GET /pid (ms)",
        "no supervisor: the floor under cold start and crash recovery on this machine",
    )
    row = results.row("baseline", "direct spawn", MS)
    for i in range(20):
        port = net.free_port_range(1)[0]
        prefix = ctx.next_prefix()
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [ctx.helper, "--port", str(port), "--name", prefix + "direct"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            t1, _ = net.wait_new_pid(port, -1, timeout=10.0)
            if t1 is not None:
                row.add((t1 - t0) * 1000)
        finally:
            proc.kill()
            proc.wait()
    s = row.summary()
    if s:
        ctx.say(f"  baseline: median {s['median']:.1f} ms (min {s['min']:.1f}, max {s['max']:.1f})")
    # Preflight: the stop figures assume a plain helper exits on SIGTERM.
    port = net.free_port_range(1)[0]
    proc = subprocess.Popen(
        [ctx.helper, "--port", str(port), "--name", ctx.next_prefix() + "sigterm"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        net.wait_new_pid(port, -1, timeout=10.0)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(1.0)
            row.note(f"a plain helper exits {(time.monotonic() - t0) * 1000:.1f} ms after SIGTERM")
        except subprocess.TimeoutExpired:
            warning = (
                "WARNING: the workload helper does not exit within 1 s of SIGTERM (with no "
                "connection open), so the stop figures measure each tool's SIGKILL timeout, "
                "not a graceful stop"
            )
            row.note(warning)
            results.warnings.append(warning)
            ctx.say("  " + warning)
    finally:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------------------
# 1. cold start


def cold_start(ctx, results, tools):
    sizes = [10, 50] if ctx.opts.quick else [10, 100, 300]
    results.figure(
        "cold",
        "Cold start: tool launch until all N services accept TCP connections (ms)",
        "target: N=300 within 450 ms",
    )
    for n in sizes:
        fig = f"cold N={n}"
        for rep, cls in each_rep(ctx, tools):
            row = results.row("cold", f"{cls.name} N={n}", MS)
            with ToolRun(ctx, cls, "cold") as run:
                ports = net.free_port_range(n)
                run.configure(plain_services(run, ports))
                elapsed = start_and_wait(ctx, run, ports)
                if elapsed is None:
                    row.note("some runs did not start")
                else:
                    row.add(elapsed * 1000)
                    ctx.say(f"  {fig} rep {rep + 1} {cls.name}: {elapsed * 1000:.1f} ms")
                # Let the tool finish starting before it is stopped: honcho and circus
                # lose a stop signal that arrives mid-start.
                time.sleep(0.5)
            run.report_leftovers(row)
            time.sleep(0.2)


# ---------------------------------------------------------------------------------------
# 2. crash recovery


def crash_recovery(ctx, results, tools):
    n = 5 if ctx.opts.quick else 10
    kills = 2 if ctx.opts.quick else 5
    results.figure(
        "crash",
        f"Crash recovery: kill -9 of one service until its replacement accepts (ms; "
        f"{n} services running, {kills} kills per run, each of a different service)",
        "target: median within 5 ms",
    )
    for rep, cls in each_rep(ctx, tools):
        row = results.row("crash", cls.name, MS)
        if not cls.supports_restart:
            row.status = "n/a"
            row.note(cls.restart_note)
            continue
        row.note(cls.restart_note)
        with ToolRun(ctx, cls, "crash") as run:
            ports = net.free_port_range(n)
            services = plain_services(run, ports)
            run.configure(services)
            if start_and_wait(ctx, run, ports) is None:
                row.note("a run did not start")
                continue
            time.sleep(0.5)
            for k in range(kills):
                svc = services[k]
                old = net.get_pid(svc.port)
                if old is None or not ctx.owned.is_ours(old, run.tag(svc.name)):
                    row.note("could not identify a service pid")
                    continue
                t0 = time.monotonic()
                os.kill(old, signal.SIGKILL)
                t1, new = net.wait_new_pid(svc.port, old, timeout=15.0)
                if t1 is None:
                    row.note("a replacement never accepted within 15 s")
                    ctx.say(f"  crash rep {rep + 1} {cls.name}: no replacement within 15 s")
                else:
                    row.add((t1 - t0) * 1000)
                    ctx.say(f"  crash rep {rep + 1} {cls.name} kill {k + 1}: {(t1 - t0) * 1000:.1f} ms")
                time.sleep(0.3)
        run.report_leftovers(row)


# ---------------------------------------------------------------------------------------
# 3. idle overhead


def idle_overhead(ctx, results, tools):
    n = 20 if ctx.opts.quick else 100
    window = 5.0 if ctx.opts.quick else 20.0
    scaled = " (scaled to 20 s)" if window != 20.0 else ""
    results.figure(
        "idle_cpu",
        f"Idle CPU: the supervisor's own CPU seconds per 20 s with {n} services running{scaled}",
        "target: 0.01 CPU-s per 20 s with 100 services",
    )
    results.figure(
        "idle_rss",
        f"Idle RSS: the supervisor's resident memory with {n} services running (MB)",
        "target: 12 MB with 100 services",
    )
    for rep, cls in each_rep(ctx, tools):
        cpu_row = results.row("idle_cpu", cls.name, "CPU-s")
        rss_row = results.row("idle_rss", cls.name, "MB")
        with ToolRun(ctx, cls, "idle") as run:
            ports = net.free_port_range(n)
            run.configure(plain_services(run, ports))
            if start_and_wait(ctx, run, ports) is None:
                cpu_row.note("a run did not start")
                continue
            time.sleep(1.0)
            pid = run.adapter.supervisor_pid()
            ticks0, ns0 = procs.cpu_ticks(pid), procs.cpu_ns_by_thread(pid)
            t0 = time.monotonic()
            time.sleep(window)
            ticks1, ns1 = procs.cpu_ticks(pid), procs.cpu_ns_by_thread(pid)
            elapsed = time.monotonic() - t0
            rss = procs.rss_kb(pid)
            if ticks0 is None or ticks1 is None or rss is None:
                cpu_row.note("the supervisor died during the window")
                continue
            scale = 20.0 / elapsed
            if set(ns0) == set(ns1):
                # Same threads at both ends: nanosecond-precise schedstat sums.
                cpu = (sum(ns1.values()) - sum(ns0.values())) / 1e9 * scale
            else:
                cpu = (ticks1 - ticks0) / procs.CLK_TCK * scale
                cpu_row.note("threads came and went: from /proc stat ticks (10 ms resolution)")
            cpu_row.add(cpu)
            cpu_row.extra.append({
                "window_s": round(elapsed, 3),
                "stat_ticks": ticks1 - ticks0,
                "schedstat_ns": sum(ns1.values()) - sum(ns0.values()),
                "threads": len(ns1),
            })
            rss_row.add(rss / 1024)
            extra = ""
            keepers = run.adapter.extra_pids()
            if keepers:
                krss = [procs.rss_kb(k) for k in keepers]
                krss = [k for k in krss if k is not None]
                if krss:
                    rss_row.value_range("keeper process (not included)", sum(krss) / 1024, "MB")
                    extra = f", keeper {sum(krss) / 1024:.1f} MB"
            ctx.say(
                f"  idle rep {rep + 1} {cls.name}: {cpu:.4f} CPU-s/20s, RSS {rss / 1024:.1f} MB{extra}"
            )
        run.report_leftovers(cpu_row)


# ---------------------------------------------------------------------------------------
# 4. log throughput

LINE_RE = re.compile(rb"line (\d{10}) x")


def log_throughput(ctx, results, tools):
    lines = 100_000 if ctx.opts.quick else 1_000_000
    results.figure(
        "logs",
        f"Log throughput: one service prints {lines:,} lines of 100 bytes; from the service's "
        f"start until all are in the tool's log (ms)",
        "target: 1M lines within 100 ms, none lost",
    )
    for rep, cls in each_rep(ctx, tools):
        row = results.row("logs", cls.name, MS)
        row.note(cls.log_note)
        with ToolRun(ctx, cls, "logs") as run:
            t0_file = os.path.join(run.wd, "t0")
            tag = run.tag("printer")
            # The shell records the service's start (wall clock, ns) and execs the helper.
            script = (
                f"date +%s.%N > {t0_file} && exec {ctx.helper} --print {lines} --name {tag}"
            )
            svc = Svc(name="printer", args=[], restart=False)
            run.adapter.argv = lambda s, script=script: ["/bin/sh", "-c", script]
            run.configure([svc])
            run.start()
            path = run.adapter.log_path("printer")
            # The last line, whole (its newline included). Every tool writes a service's
            # lines in order (the parse below checks it), so the last one in the file
            # means all are; only the file's end is read while the tool works, so the
            # harness costs next to no CPU on the 2 cores it shares with the tool (counting
            # every line in Python cost more CPU than the tools, and more for longer lines).
            last = b"line %010d x" % lines
            deadline = time.monotonic() + (60 if ctx.opts.quick else 180)
            last_growth = time.monotonic()
            t_done_wall = None
            size = 0
            while time.monotonic() < deadline:
                try:
                    grown = os.path.getsize(path)
                except OSError:
                    grown = 0
                if grown > size:
                    size = grown
                    last_growth = time.monotonic()
                    with open(path, "rb") as f:
                        f.seek(max(0, size - 4096))
                        tail = f.read(4096)
                    at = tail.rfind(last)
                    if at >= 0 and tail.find(b"\n", at) >= 0:
                        t_done_wall = time.time()
                        break
                if run.adapter.exited() and time.monotonic() - last_growth > 2.0:
                    break
                if time.monotonic() - last_growth > 20.0:
                    break
                time.sleep(0.001)
            t0_wall = None
            try:
                with open(t0_file) as tf:
                    t0_wall = float(tf.read().strip())
            except (OSError, ValueError):
                pass
            # Parse the whole file for lost and reordered lines.
            seqs = []
            try:
                with open(path, "rb") as lf:
                    seqs = [int(m) for m in LINE_RE.findall(lf.read())]
            except OSError:
                pass
            unique = set(seqs)
            lost = sum(1 for i in range(1, lines + 1) if i not in unique)
            reordered = sum(1 for a, b in zip(seqs, seqs[1:]) if b < a)
            dups = len(seqs) - len(unique)
            if t_done_wall is not None and lost:
                took = f"the last line came, {lost} lines did not"
                row.note("some runs never had every line")
            elif t_done_wall is not None and t0_wall is not None:
                row.add((t_done_wall - t0_wall) * 1000)
                took = f"{(t_done_wall - t0_wall) * 1000:.0f} ms"
            elif t0_wall is None:
                took = "no start time recorded"
                row.note("the service's start time was not recorded (wrapper script failed?)")
            else:
                took = f"never complete ({size} bytes in the file)"
                row.note("some runs never had every line")
            if lost or reordered or dups:
                row.note(f"rep {rep + 1}: lost {lost}, reordered {reordered}, duplicated {dups}")
            else:
                row.note("none lost or reordered")
            row.extra.append({"lost": lost, "reordered": reordered, "dups": dups})
            ctx.say(
                f"  logs rep {rep + 1} {cls.name}: {took}, lost {lost}, reordered {reordered}, dup {dups}"
            )
        run.report_leftovers(row)


# ---------------------------------------------------------------------------------------
# 5. stop


def stop_all(ctx, results, tools):
    n = 20 if ctx.opts.quick else 100
    results.figure(
        "stop",
        f"Stop: graceful stop of the tool until all {n} plain services are gone (ms)",
        "target: 100 services within 20 ms",
    )
    results.figure(
        "stop_ignorer",
        "Stop: a SIGTERM-ignoring service is killed this long after its stop timeout (ms)",
        "target: within 100 ms after the 2 s timeout",
    )
    results.figure(
        "stop_orphans",
        "Stop: grandchildren left alive after the tool exited (of 2: one plain, one that called setsid())",
        "target: 0",
    )
    results.figure("stop_exit", "Stop: graceful stop until the tool itself exited (ms)", "")
    for rep, cls in each_rep(ctx, tools):
        row = results.row("stop", cls.name, MS)
        ign_row = results.row("stop_ignorer", cls.name, MS)
        orph_row = results.row("stop_orphans", cls.name, "count")
        exit_row = results.row("stop_exit", cls.name, MS)
        ign_row.note(cls.stop_note)
        timeout = 5.0 if cls.name == "honcho" else 2.0
        with ToolRun(ctx, cls, "stop") as run:
            ports = net.free_port_range(n + 3)
            services = plain_services(run, ports[:n])
            gc1 = os.path.join(run.wd, "grandchild.pid")
            gc2 = os.path.join(run.wd, "setsid-grandchild.pid")
            specials = [
                Svc("ignorer", ["--port", str(ports[n]), "--ignore-sigterm", "--name", run.tag("ignorer")], ports[n]),
                Svc("forker", ["--port", str(ports[n + 1]), "--grandchild", gc1, "--name", run.tag("forker")], ports[n + 1]),
                Svc("setsider", ["--port", str(ports[n + 2]), "--setsid-grandchild", gc2, "--name", run.tag("setsider")], ports[n + 2]),
            ]
            run.configure(services + specials)
            if start_and_wait(ctx, run, ports) is None:
                row.note("a run did not start")
                continue
            grandchildren = {"plain": procs.read_pidfile(gc1, 5), "setsid": procs.read_pidfile(gc2, 5)}
            time.sleep(0.3)
            plain = {}
            for svc in services:
                pid = ctx.owned.pid_named(run.tag(svc.name))
                if pid:
                    plain[pid] = None
            ignorer = ctx.owned.pid_named(run.tag("ignorer"))
            forker = ctx.owned.pid_named(run.tag("forker"))
            setsider = ctx.owned.pid_named(run.tag("setsider"))
            watched = dict(plain)
            for p in (ignorer, forker, setsider):
                if p:
                    watched[p] = None
            t0 = time.monotonic()
            run.adapter.stop()
            t_exit = None
            deadline = t0 + timeout + 5.0
            pending = set(watched)
            while time.monotonic() < deadline:
                now = time.monotonic()
                for p in list(pending):
                    if not procs.alive(p):
                        watched[p] = now - t0
                        pending.discard(p)
                if t_exit is None and run.adapter.exited():
                    t_exit = now - t0
                if not pending and t_exit is not None:
                    break
                time.sleep(0.001)
            plain_times = [watched[p] for p in plain]
            if plain and all(t is not None for t in plain_times):
                row.add(max(plain_times) * 1000)
                took = f"{max(plain_times) * 1000:.1f} ms"
            else:
                took = f"{sum(t is None for t in plain_times)} survived"
                row.note("some plain services outlived the stop")
            if ignorer and watched.get(ignorer) is not None:
                ign_row.add((watched[ignorer] - timeout) * 1000)
                ign = f"+{(watched[ignorer] - timeout) * 1000:.0f} ms after {timeout:.0f}s"
            else:
                ign = "never killed"
                ign_row.note("the SIGTERM-ignorer was never killed")
            if t_exit is not None:
                exit_row.add(t_exit * 1000)
            elif cls.name == "honcho":
                exit_row.note(
                    f"did not exit within {deadline - t0:.0f} s: honcho reads each service's output "
                    "to EOF before it counts it stopped, and a surviving grandchild holds that pipe"
                )
            else:
                exit_row.note(f"the tool did not exit within {deadline - t0:.0f} s")
            # Grandchildren: still alive once the tool has exited (+ 200 ms grace)?
            time.sleep(0.2)
            left = [k for k, p in grandchildren.items() if p and procs.alive(p) and ctx.owned.is_ours(p, run.prefix)]
            orph_row.add(len(left))
            for k in left:
                orph_row.tally("left", k)
            for k in left:
                procs.kill_pid(grandchildren[k])
            # Measured; a tool still running now gets only a short grace in teardown.
            run.adapter.stop_grace = 1.0
            ctx.say(
                f"  stop rep {rep + 1} {cls.name}: plain {took}, ignorer {ign}, "
                f"tool exit {'-' if t_exit is None else f'{t_exit * 1000:.0f} ms'}, "
                f"grandchildren left {len(left)} {left}"
            )
        run.report_leftovers(row)


# ---------------------------------------------------------------------------------------
# 6. fleet only


def fleet_has(ctx, *subcommand):
    try:
        return subprocess.run(
            [ctx.fleet, *subcommand, "--help"], capture_output=True, timeout=10
        ).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def fleet_kill9(ctx, results, fleet_cls):
    results.figure(
        "fleet_kill9",
        "fleet only: workload processes left 2 s after `kill -9` of the supervisor "
        "(10 services incl. a grandchild and a setsid() grandchild: 12 processes)",
        "target: 0",
    )
    results.figure("fleet_kill9_time", "fleet only: `kill -9` of the supervisor until its keeper has removed every workload process (ms)", "")
    n = 10
    for rep in range(ctx.opts.reps):
        row = results.row("fleet_kill9", "fleet", "count")
        trow = results.row("fleet_kill9_time", "fleet", MS)
        with ToolRun(ctx, fleet_cls, "kill9") as run:
            ports = net.free_port_range(n)
            gc1 = os.path.join(run.wd, "grandchild.pid")
            gc2 = os.path.join(run.wd, "setsid-grandchild.pid")
            services = plain_services(run, ports[: n - 2])
            services += [
                Svc("forker", ["--port", str(ports[n - 2]), "--grandchild", gc1, "--name", run.tag("forker")], ports[n - 2]),
                Svc("setsider", ["--port", str(ports[n - 1]), "--setsid-grandchild", gc2, "--name", run.tag("setsider")], ports[n - 1]),
            ]
            run.configure(services)
            if start_and_wait(ctx, run, ports) is None:
                row.note("a run did not start")
                continue
            procs.read_pidfile(gc1, 5)
            procs.read_pidfile(gc2, 5)
            time.sleep(0.3)
            keepers = run.adapter.find_keeper()
            if not keepers:
                row.note("no keeper process found")
            workload = ctx.owned.find(run.prefix)
            t0 = time.monotonic()
            os.kill(run.adapter.proc.pid, signal.SIGKILL)
            run.adapter.proc.wait(5)
            remaining = set(workload)
            t_all = None
            while time.monotonic() < t0 + 2.0:
                remaining = {p for p in remaining if procs.alive(p)}
                if not remaining and t_all is None:
                    t_all = time.monotonic() - t0
                    break
                time.sleep(0.001)
            survivors = [p for p in remaining if procs.alive(p)]
            time.sleep(max(0.0, t0 + 2.0 - time.monotonic()))
            survivors = [p for p in survivors if procs.alive(p)]
            row.add(len(survivors))
            if t_all is not None:
                trow.add(t_all * 1000)
            else:
                trow.note("some survived 2 s")
            names = []
            for p in survivors:
                argv = procs.cmdline(p) or []
                if "--name" in argv:
                    names.append(argv[argv.index("--name") + 1].removeprefix(run.prefix))
            for name in names:
                row.tally("left", name)
            ctx.say(
                f"  kill -9 fleet rep {rep + 1}: {len(workload)} workload pids, {len(survivors)} left after 2 s"
                + (f", all gone in {t_all * 1000:.0f} ms" if t_all is not None else "")
            )
        run.report_leftovers(row)


def fleet_ps_latency(ctx, results, fleet_cls):
    n = 50 if ctx.opts.quick else 300
    results.figure("fleet_ps", f"fleet only: `fleet ps --json` latency with {n} services (ms)", "")
    row = results.row("fleet_ps", "fleet", MS)
    if not fleet_has(ctx, "ps"):
        row.status = "not measured yet"
        row.note("needs `fleet ps` (fleet ps --help does not exit 0)")
        return
    calls = 5 if ctx.opts.quick else 20
    for rep in range(ctx.opts.reps):
        with ToolRun(ctx, fleet_cls, "ps") as run:
            ports = net.free_port_range(n)
            run.configure(plain_services(run, ports))
            if start_and_wait(ctx, run, ports) is None:
                row.note("a run did not start")
                continue
            time.sleep(0.5)
            times = []
            for _ in range(calls):
                t0 = time.monotonic()
                out = subprocess.run(
                    [ctx.fleet, "ps", "--json"], cwd=run.wd, capture_output=True, timeout=30
                )
                elapsed = time.monotonic() - t0
                if out.returncode != 0:
                    row.note(f"fleet ps --json exited {out.returncode}: {out.stderr[:200]!r}")
                    break
                times.append(elapsed * 1000)
                row.add(elapsed * 1000)
            try:
                import json

                listed = json.loads(out.stdout)
                count = len(listed) if isinstance(listed, list) else len(listed.get("services", []))
                if count != n:
                    row.note(f"listed {count} services, expected {n}")
            except (ValueError, AttributeError):
                row.note("output is not the expected JSON")
            if times:
                ctx.say(f"  fleet ps rep {rep + 1}: median {sorted(times)[len(times) // 2]:.1f} ms over {len(times)} calls")


def _redeploy_services(run, port, mode):
    tag = run.tag("web")
    if mode == "start-first":
        return [
            Svc(
                "web",
                ["--name", tag],
                port,
                fleet_ports=False,
                fleet_extra={
                    "socket": str(port),
                    "redeploy": '"start-first"',
                    "health": f'{{ http = "http://127.0.0.1:{port}/health", interval = "1s" }}',
                    "watch": '["trigger.txt"]',
                },
            )
        ]
    return [
        Svc(
            "web",
            ["--port", str(port), "--name", tag],
            port,
            fleet_extra={
                "redeploy": '"stop-first"',
                "health": f'{{ http = "http://127.0.0.1:{port}/health", interval = "1s" }}',
                "watch": '["trigger.txt"]',
            },
        )
    ]


def _trigger(run, how, counter=[0]):
    counter[0] += 1
    if how == "watch":
        with open(os.path.join(run.wd, "trigger.txt"), "w") as f:
            f.write(f"change {counter[0]} {time.time()}\n")
    else:
        # Not waited for here: the clock runs from the request, whatever the command
        # waits for before it returns. Reaped in _reap_triggers.
        _TRIGGERS.append(subprocess.Popen(
            [run.ctx.fleet, "redeploy", "web"], cwd=run.wd,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))


_TRIGGERS = []


def _reap_triggers():
    while _TRIGGERS:
        proc = _TRIGGERS.pop()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def fleet_redeploy(ctx, results, fleet_cls):
    results.figure(
        "fleet_save",
        "fleet only: save-to-serving: trigger file written until a new instance answers (ms)",
        "",
    )
    results.figure(
        "fleet_redeploy_load",
        "fleet only: failed requests during a redeploy under load (~200 req/s, new connection each)",
        "target: 0 with start-first + socket",
    )
    duration = 6.0 if ctx.opts.quick else 10.0
    # "watch" (write a watched file) until that is seen not to redeploy; then the
    # `fleet redeploy` command, if it exists.
    how = None
    for mode in ("start-first", "stop-first"):
        variant = "start-first, socket" if mode == "start-first" else "stop-first, ports"
        srow = results.row("fleet_save", f"fleet ({variant})", MS)
        lrow = results.row("fleet_redeploy_load", f"fleet ({variant})", "failed")
        for rep in range(ctx.opts.reps):
            with ToolRun(ctx, fleet_cls, f"redeploy-{mode}") as run:
                port = net.free_port_range(1)[0]
                with open(os.path.join(run.wd, "trigger.txt"), "w") as f:
                    f.write("initial\n")
                run.configure(_redeploy_services(run, port, mode))
                if start_and_wait(ctx, run, [port]) is None:
                    srow.note("a run did not start")
                    break
                time.sleep(1.0)
                # Save-to-serving: file written at t0, until GET /pid names a new pid.
                old = net.get_pid(port)
                if how is None:
                    how = "watch"
                t0 = time.monotonic()
                _trigger(run, how)
                t1, new = net.wait_new_pid(port, old, timeout=10.0, interval=0.001)
                if t1 is None and how == "watch" and fleet_has(ctx, "redeploy"):
                    how = "command"
                    old = net.get_pid(port)
                    t0 = time.monotonic()
                    _trigger(run, how)
                    t1, new = net.wait_new_pid(port, old, timeout=10.0, interval=0.001)
                if t1 is None:
                    srow.status = "not measured yet"
                    srow.note("no redeploy observed (needs file watching or `fleet redeploy`)")
                    lrow.status = "not measured yet"
                    lrow.note("needs a working redeploy")
                    ctx.say(f"  redeploy ({variant}): no redeploy observed, skipping")
                    break
                if how == "command":
                    srow.note("file watching did not redeploy: triggered by `fleet redeploy web` "
                              "instead (command-to-serving, not save-to-serving)")
                    lrow.note("redeploy triggered by `fleet redeploy web`")
                srow.add((t1 - t0) * 1000)
                ctx.say(f"  redeploy ({variant}) rep {rep + 1}: {how}-to-serving {(t1 - t0) * 1000:.0f} ms")
                # Let the old instance stop before the load test.
                time.sleep(2.5)
                load = net.LoadGenerator(port, rate=200, duration=duration)
                load.start()
                time.sleep(duration / 2)
                _trigger(run, how)
                load.join()
                lrow.add(load.failed)
                if load.errors:
                    lrow.note(f"rep {rep + 1}: " + ", ".join(f"{k} x{v}" for k, v in sorted(load.errors.items())))
                if len(load.pids) < 2:
                    lrow.note(f"rep {rep + 1}: no second instance answered during the load")
                ctx.say(
                    f"  redeploy load ({variant}) rep {rep + 1}: {load.failed}/{load.sent} failed, "
                    f"instances seen {len(load.pids)}"
                )
            _reap_triggers()
            run.report_leftovers(srow)
    _reap_triggers()
