"""Machine facts, markdown tables, and the results files."""

import json
import os
import platform
import socket
import subprocess
import time


def loadavg():
    """1/5/15-minute load: other work on this shared machine skews every figure."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def machine_facts():
    facts = {"nproc": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    facts["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    facts["memory"] = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                    break
    except OSError:
        pass
    facts["kernel"] = platform.release()
    facts["python"] = platform.python_version()
    try:
        facts["rustc"] = subprocess.run(
            ["rustc", "--version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        facts["rustc"] = "?"
    facts["loadavg at start"] = loadavg()
    facts["hostname"] = socket.gethostname()
    return facts


def fmt(value, unit):
    if value is None:
        return "-"
    if unit == "count" or unit == "failed":
        return f"{value:g}"
    if unit == "CPU-s":
        return f"{value:.4f}"
    if unit == "MB":
        return f"{value:.1f}"
    if unit == "ms":
        if value >= 100:
            return f"{value:.0f}"
        return f"{value:.1f}"
    return f"{value:g}"


def table(results, key):
    rows = results.rows_of(key)
    lines = ["| tool | median | min | max | n | notes |", "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        s = row.summary()
        notes = "; ".join(row.all_notes()).replace("|", "\\|")
        if row.status and not s:
            lines.append(f"| {row.tool} | {row.status} | | | | {notes} |")
        elif not s:
            lines.append(f"| {row.tool} | no sample | | | | {notes} |")
        else:
            lines.append(
                f"| {row.tool} | {fmt(s['median'], row.unit)} | {fmt(s['min'], row.unit)} | "
                f"{fmt(s['max'], row.unit)} | {s['n']} | {notes} |"
            )
    return "\n".join(lines)


def markdown(results, facts, versions, install, opts, started, finished):
    out = [
        f"# fleet benchmark, {time.strftime('%Y-%m-%d %H:%M', time.localtime(started))}"
        + (" (--quick)" if opts.quick else ""),
        "",
        f"Repetitions: {opts.reps}, tools alternated within each repetition; "
        f"took {finished - started:.0f} s. Medians and min/max over all samples.",
        "",
    ]
    for warning in results.warnings:
        out += [f"**{warning}**", ""]
    out += [
        "## Machine",
        "",
    ]
    out += [f"- {k}: {v}" for k, v in facts.items()]
    out += ["", "## Tools", ""]
    for name, version in versions.items():
        out.append(f"- {name}: {version}")
    for name, reason in install.items():
        if reason:
            out.append(f"- {name}: {reason}")
    for key, title, target in results.figures:
        out += ["", f"## {title}", ""]
        if target:
            out += [f"_{target}_", ""]
        out.append(table(results, key))
    return "\n".join(out) + "\n"


def write(bench_dir, text, data, quick):
    results_dir = os.path.join(bench_dir, "results")
    os.makedirs(results_dir, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H%M")
    base = f"{stamp}-{socket.gethostname()}" + ("-quick" if quick else "")
    md = os.path.join(results_dir, base + ".md")
    js = os.path.join(results_dir, base + ".json")
    with open(md, "w") as f:
        f.write(text)
    with open(js, "w") as f:
        json.dump(data, f, indent=1)
    return md, js
