#!/usr/bin/python3
"""pard against the tools a user would otherwise pick, measured in one run.

Run by bench/peers/run.sh (make bench-peers) with Debian's /usr/bin/python3,
which has python3-joblib; a pyenv python3 earlier on the PATH would not.

Every figure here is taken in this one invocation, on this machine, with 2
workers: pard's own (parbench overhead --noop-only, parbench latency) and
each peer's; the table shows the ratio of pard's rate to the peer's. A peer
that is not installed is skipped with a message saying what to install.

  multiprocessing.Pool.map    no-op tasks, chunksize=1 and the default
  ProcessPoolExecutor.map     no-op tasks (chunksize=1, its default)
  joblib.Parallel             no-op tasks, n_jobs=2, batch_size='auto'
  GNU parallel                `true` per input, -j2: a process per task
  ZeroMQ ipc://               REQ/REP round trip between two processes
                              (bench/peers/zmq_rtt.c)
"""
import argparse
import concurrent.futures
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import time

WORKERS = 2


def noop(_x):
    return None


def best_rate(run, n, repeat):
    """The best of `repeat` timed runs of run(n), as tasks per second."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run(n)
        best = min(best, time.perf_counter() - t0)
    return n / best


def parbench_json(parbench, args):
    cmd = [parbench] + args + ["--json", "--quiet"]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return " ".join(cmd[0:1] + args), json.loads(out)


def figure(rep, key):
    return rep["figures"][key]["value"]


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %s, %d CPUs, Linux %s" % (platform.node(), cpu, os.cpu_count(), platform.release())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parbench", required=True)
    ap.add_argument("--zmq", default="")
    ap.add_argument("--out", default=".")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    a = ap.parse_args()
    q = a.quick
    rows = []  # (comparison, pard figure, peer figure, unit, ratio, target, command)
    skipped = []

    def say(msg):
        print("bench-peers: " + msg, file=sys.stderr, flush=True)

    # pard's own figures, first.
    say("pard: parbench overhead --noop-only (2 workers)")
    noop_args = ["overhead", "--noop-only", "--workers", "2", "--repeat", str(a.repeat)]
    if q:
        noop_args += ["--tasks", "20000"]
    noop_cmd, noop_rep = parbench_json(a.parbench, noop_args)
    pard_unb = figure(noop_rep, "noop_unbatched_per_s")
    pard_auto = figure(noop_rep, "noop_auto_per_s")
    pard_thr = figure(noop_rep, "noop_threads_per_s")
    pard_arr = figure(noop_rep, "noop_array_per_s")
    say("pard: parbench latency (ring, adaptive and block)")
    # Not pinned: ZeroMQ's processes (and its I/O threads) are placed by the
    # scheduler, so pard's are too.
    lat_args = ["latency", "--only", "ring-adaptive,ring-block,pipe", "--no-pin", "--rounds",
                "2000" if q else "20000"]
    lat_cmd, lat = parbench_json(a.parbench, lat_args)
    p50 = {r["key"]: r["p50_us"] for r in lat["tables"][0]["rows"]}

    rows.append(("no-op map: pard_map_array auto-batched vs 2 pthreads on an atomic counter",
                 pard_arr, pard_thr, "tasks/s", pard_arr / pard_thr, ">= 0.5", noop_cmd))
    rows.append(("no-op map: pard_map auto-batched vs 2 pthreads on an atomic counter",
                 pard_auto, pard_thr, "tasks/s", pard_auto / pard_thr, "", noop_cmd))

    # multiprocessing.Pool.map
    n1 = 2000 if q else 20000
    nd = 200000 if q else 2000000
    say("Pool.map: %d no-op tasks with chunksize=1, %d with the default" % (n1, nd))
    with multiprocessing.Pool(WORKERS) as pool:
        pool.map(noop, range(1000))
        r1 = best_rate(lambda n: pool.map(noop, range(n), chunksize=1), n1, a.repeat)
        rd = best_rate(lambda n: pool.map(noop, range(n)), nd, a.repeat)
    rows.append(("no-op map: pard unbatched vs Pool.map(chunksize=1)", pard_unb, r1, "tasks/s",
                 pard_unb / r1, ">= 100", noop_cmd))
    rows.append(("no-op map: pard_map_array auto-batched vs Pool.map (default chunksize)",
                 pard_arr, rd, "tasks/s", pard_arr / rd, ">= 15", noop_cmd))
    rows.append(("no-op map: pard_map auto-batched vs Pool.map (default chunksize)", pard_auto,
                 rd, "tasks/s", pard_auto / rd, "", noop_cmd))

    # concurrent.futures
    ne = 2000 if q else 10000
    say("ProcessPoolExecutor.map: %d no-op tasks" % ne)
    with concurrent.futures.ProcessPoolExecutor(WORKERS) as ex:
        list(ex.map(noop, range(200)))
        re_ = best_rate(lambda n: list(ex.map(noop, range(n))), ne, a.repeat)
    rows.append(("no-op map: pard unbatched vs ProcessPoolExecutor.map", pard_unb, re_, "tasks/s",
                 pard_unb / re_, "", noop_cmd))

    # joblib
    try:
        import joblib
    except ImportError:
        joblib = None
        skipped.append("joblib: not installed for %s (Debian: apt-get install python3-joblib)"
                       % sys.executable)
    if joblib:
        nj = 20000 if q else 200000
        say("joblib %s: %d no-op tasks, n_jobs=2, batch_size='auto'" % (joblib.__version__, nj))
        with joblib.Parallel(n_jobs=WORKERS) as par:
            par(joblib.delayed(noop)(i) for i in range(1000))
            rj = best_rate(lambda n: par(joblib.delayed(noop)(i) for i in range(n)), nj, a.repeat)
        rows.append(("no-op map: pard auto-batched vs joblib (batch_size='auto')", pard_auto, rj,
                     "tasks/s", pard_auto / rj, "", noop_cmd))

    # GNU parallel
    gp = shutil.which("parallel")
    gnu = False
    if gp:
        v = subprocess.run([gp, "--version"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           stdin=subprocess.DEVNULL, text=True).stdout
        gnu = "GNU parallel" in v
    if not gnu:
        skipped.append("GNU parallel: not installed (Debian: apt-get install parallel; moreutils' "
                       "parallel is another program)")
    else:
        ng = 50 if q else 300
        say("GNU parallel: %d tasks of `true`, -j2" % ng)

        def run_parallel(n):
            subprocess.run([gp, "-j", str(WORKERS), "--will-cite", "true", ":::"] +
                           [str(i) for i in range(n)], check=True, stdin=subprocess.DEVNULL)
        run_parallel(10)
        rg = best_rate(run_parallel, ng, min(a.repeat, 2))
        rows.append(("tasks: pard unbatched vs GNU parallel (a process per task)", pard_unb, rg,
                     "tasks/s", pard_unb / rg, "", noop_cmd))

    # ZeroMQ
    if a.zmq and os.access(a.zmq, os.X_OK):
        say("ZeroMQ: ipc:// REQ/REP round trip")
        zr = "2000" if q else "20000"
        z = json.loads(subprocess.run([a.zmq, zr, "8"], check=True, stdout=subprocess.PIPE,
                                      text=True).stdout)
        for key, name in (("ring-adaptive", "adaptive"), ("ring-block", "block")):
            if key in p50 and p50[key]:
                rows.append(("round trip: pard ring (%s) vs ZeroMQ ipc:// REQ/REP, p50" % name,
                             p50[key], z["p50_us"], "us", z["p50_us"] / p50[key], "",
                             lat_cmd))
        if p50.get("pipe"):
            rows.append(("round trip: pipe vs ZeroMQ ipc:// REQ/REP, p50 (for scale)",
                         p50["pipe"], z["p50_us"], "us", z["p50_us"] / p50["pipe"], "", lat_cmd))
    else:
        skipped.append("ZeroMQ: not built (Debian: apt-get install libzmq3-dev, then rerun "
                       "make bench-peers)")

    # The table.
    def fmt(v):
        return "%.3g" % v if v < 1000 else "{:,.0f}".format(v)

    def fmt_ratio(v):
        # Two decimals near the targets (0.5, 15, 100), so that a ratio
        # shown as "0.5" is never a missed 0.49.
        return "%.2f" % v if v < 100 else "%.0f" % v

    lines = ["pard against its peers (2 workers; every ratio measured in this one run)",
             "machine: " + machine(), ""]
    w = max(len(r[0]) for r in rows)
    lines.append("%-*s  %12s  %12s  %-8s  %9s  %s" % (w, "comparison", "pard", "peer", "unit",
                                                      "pard/peer", "target"))
    for name, pv, qv, unit, ratio, target, _cmd in rows:
        met = ""
        if target:
            op, t = target.split()
            ok = ratio >= float(t) if op == ">=" else ratio <= float(t)
            met = "%s %s" % (target, "met" if ok else "MISSED")
        lines.append("%-*s  %12s  %12s  %-8s  %9s  %s" % (w, name, fmt(pv), fmt(qv), unit,
                                                            fmt_ratio(ratio), met))
    lines.append("")
    lines.append("pard/peer is how many times faster pard is (rates: pard / peer; round trips: "
                 "peer / pard).")
    lines.append("pard figures: `%s` and `%s`" % (noop_cmd, lat_cmd))
    for s in skipped:
        lines.append("skipped: " + s)
    print("\n".join(lines))

    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "peers.md"), "w") as f:
        f.write("Machine: %s\n\n" % machine())
        f.write("| comparison | pard | peer | unit | pard/peer | target |\n")
        f.write("| --- | ---: | ---: | --- | ---: | --- |\n")
        for name, pv, qv, unit, ratio, target, _cmd in rows:
            met = ""
            if target:
                op, t = target.split()
                ok = ratio >= float(t) if op == ">=" else ratio <= float(t)
                met = "%s: %s" % (target, "met" if ok else "**missed**")
            f.write("| %s | %s | %s | %s | %s | %s |\n" % (name, fmt(pv), fmt(qv), unit,
                                                           fmt_ratio(ratio), met))
        f.write("\npard figures: `%s`, `%s`; peers: `bench/peers/peers.py` "
                "(`make bench-peers`).\n" % (noop_cmd, lat_cmd))
        for s in skipped:
            f.write("\nSkipped: %s\n" % s)
    with open(os.path.join(a.out, "peers.json"), "w") as f:
        json.dump({"machine": machine(), "skipped": skipped,
                   "rows": [dict(zip(("comparison", "pard", "peer", "unit", "ratio", "target",
                                      "command"), r)) for r in rows]}, f, indent=1)
    say("wrote %s and %s" % (os.path.join(a.out, "peers.md"), os.path.join(a.out, "peers.json")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
