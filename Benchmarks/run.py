#!/usr/bin/env python3
"""Benchmarks of dsm: speed-up of MGS and matrix multiply against the same
programs run as plain processes on the native kernel, and the fault path's
latencies next to their floor, all measured in one invocation.

    python3 Benchmarks/run.py                 # sizes 256 512 1024, nodes 1-4
    python3 Benchmarks/run.py --sizes 256,512,1024,2048 --repeat 3
    python3 Benchmarks/run.py --programs img_mgs,img_matmul   # pthreads, image mode
    python3 Benchmarks/run.py --testbed 2 --nodes 1,2         # also on 2 namespace hosts (root)
    python3 Benchmarks/run.py --round-trips 15,50,200,1000    # emulated distance (DSM_DELAY_US)

mgs and matmul are the SPMD System V versions (`dsmrun --spmd`, native: N
processes); mgs_spin and mgs_semcount are mgs with the barriers people write
by hand: a spin barrier on a shared word, and a semaphore-locked counter in
the segment (`--programs mgs,mgs_spin,mgs_semcount`); img_mgs and img_matmul are the pthreads versions (image mode
`dsmrun -n N prog size N`, one thread per node; native: one process with N
threads); img_mgs_counter is img_mgs written with globals and a
mutex-protected progress counter next to them, img_workqueue a Mandelbrot
image whose rows threads take from a mutex-protected index, img_jacobi a
stencil with a mutex-protected reduction per step (the size is n; both run
as `prog size N` like the others). `prog@release` runs a program under
`--consistency release` (`--programs img_workqueue,img_workqueue@release`
puts both memory models side by side).

Prints tables and writes Benchmarks/results/{bench.csv,bench.json,speedup.png}
(the plot needs matplotlib: `pip install matplotlib`). Each configuration is
run `--repeat` times, native and dsm interleaved, and the median time of
each is kept: the machines are shared and noisy, so compare ratios measured
in the same run, not absolute times across runs.
"""
import argparse
import csv
import json
import os
import statistics
import random
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "Benchmarks", "results")
BIN = os.path.join(RESULTS, "bin")
DSMRUN = os.path.join(ROOT, ".build", "release", "dsmrun")


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def build(skip_swift):
    os.makedirs(BIN, exist_ok=True)
    if not skip_swift:
        sh(["swift", "build", "-c", "release"], cwd=ROOT, stdout=subprocess.DEVNULL)
    inc = ["-I", os.path.join(ROOT, "include"), "-I", os.path.join(ROOT, "Tests", "Programs")]
    programs = {
        "mgs": os.path.join(ROOT, "Tests", "Programs", "mgs.c"),
        "mgs_spin": os.path.join(ROOT, "Tests", "Programs", "mgs_spin.c"),
        "mgs_semcount": os.path.join(ROOT, "Tests", "Programs", "mgs_semcount.c"),
        "matmul": os.path.join(ROOT, "Tests", "Programs", "matmul.c"),
        "img_mgs": os.path.join(ROOT, "Tests", "Programs", "img_mgs.c"),
        "img_matmul": os.path.join(ROOT, "Tests", "Programs", "img_matmul.c"),
        "img_mgs_counter": os.path.join(ROOT, "Tests", "Programs", "img_mgs_counter.c"),
        "img_workqueue": os.path.join(ROOT, "Tests", "Programs", "img_workqueue.c"),
        "img_jacobi": os.path.join(ROOT, "Tests", "Programs", "img_jacobi.c"),
        "fault_latency": os.path.join(ROOT, "Benchmarks", "fault_latency.c"),
        "floor": os.path.join(ROOT, "Benchmarks", "floor.c"),
    }
    for name, src in programs.items():
        sh(["cc", "-std=gnu11", "-O2", "-pthread"] + inc + [src, "-o", os.path.join(BIN, name), "-lm"])
    # Optional: the io_uring comparison needs liburing (apt-get install liburing-dev).
    subprocess.run(["cc", "-O2", os.path.join(ROOT, "Benchmarks", "uring_pingpong.c"), "-o",
                    os.path.join(BIN, "uring_pingpong"), "-luring"], stderr=subprocess.DEVNULL)


def fresh_key():
    return "0x%x" % (0x5E000000 + random.randrange(0, 0xFFFF) * 0x100)


def parse_time(out):
    m = re.search(r"(?:^|\s)time=([0-9.]+)", out, re.M)
    if not m:
        raise RuntimeError("no time= line in:\n" + out)
    return float(m.group(1))


def image_mode(program):
    return program.startswith("img_")


def run_native(program, nodes, size):
    if image_mode(program):
        r = subprocess.run([os.path.join(BIN, program), str(size), str(nodes)], capture_output=True, text=True,
                           timeout=1800)
        if r.returncode != 0:
            raise RuntimeError(f"native {program} {size} with {nodes} threads failed: {r.stdout}{r.stderr}")
        return parse_time(r.stdout), None
    env = dict(os.environ, DSM_TEST_KEY=fresh_key(), DSM_NODES=str(nodes))
    procs = []
    for i in range(nodes):
        e = dict(env, DSM_NODE_ID=str(i))
        procs.append(subprocess.Popen([os.path.join(BIN, program), str(size)], env=e,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=1800) for p in procs]
    for p, (o, e) in zip(procs, outs):
        if p.returncode != 0:
            raise RuntimeError(f"native {program} {size} x{nodes} failed: {e}")
    return parse_time(outs[0][0]), None


def run_dsm(program, nodes, size, extra=(), delay_us=0):
    env = dict(os.environ, DSM_TEST_KEY=fresh_key(), DSM_DELAY_US=str(delay_us))
    mode = [] if image_mode(program) else ["--spmd"]
    program_args = [str(size), str(nodes)] if image_mode(program) else [str(size)]
    r = subprocess.run([DSMRUN, "-n", str(nodes), "--stats=json", *extra, *mode,
                        os.path.join(BIN, program), *program_args],
                       env=env, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"dsmrun {program} {size} -n {nodes} failed ({r.returncode}): {r.stderr}")
    stats = None
    for line in r.stderr.splitlines():
        if line.startswith("dsm-stats "):
            stats = json.loads(line[len("dsm-stats "):])
    return parse_time(r.stdout), stats


def speedups(args):
    """Times each configuration --repeat times, the kinds interleaved, and
    keeps the median of each (the machines are shared and noisy)."""
    rows = []
    kinds = ("native", "dsm", "hosts") if args.testbed_args else ("native", "dsm")
    for spec in args.programs:
        # "img_workqueue@release": the program under --consistency release.
        program, _, model = spec.partition("@")
        model_args = ["--consistency", model] if model else []
        for size in args.sizes:
            base = {}
            for nodes in args.nodes:
                times = {k: [] for k in kinds}
                stats = {}
                for _ in range(args.repeat):
                    for kind in kinds:
                        if kind == "native":
                            t, _ = run_native(program, nodes, size)
                        else:
                            extra = model_args + args.dsm_args + (args.testbed_args if kind == "hosts" else [])
                            t, s = run_dsm(program, nodes, size, extra)
                            stats.setdefault(kind, []).append((t, s))
                        times[kind].append(t)
                median = {k: statistics.median(v) for k, v in times.items()}
                # The spread of the repeats: (slowest - fastest) / median.
                spread = {k: (max(v) - min(v)) / statistics.median(v) for k, v in times.items()}
                if nodes == 1:
                    base = dict(median)
                row = {"program": spec, "size": size, "nodes": nodes,
                       "native_s": median["native"], "dsm_s": median["dsm"], "repeats": args.repeat,
                       "native_spread": spread["native"], "dsm_spread": spread["dsm"]}
                row["native_speedup"] = base["native"] / median["native"] if base else float("nan")
                for kind, prefix in (("dsm", "dsm"), ("hosts", "hosts")):
                    if kind not in median:
                        continue
                    row[f"{prefix}_s"] = median[kind]
                    row[f"{prefix}_spread"] = spread[kind]
                    row[f"{prefix}_speedup"] = base[kind] / median[kind] if base else float("nan")
                    row[f"{prefix}_fraction_of_native"] = row[f"{prefix}_speedup"] / row["native_speedup"]
                    # The counters of the run closest to the median.
                    t, s = min(stats[kind], key=lambda ts: abs(ts[0] - median[kind]))
                    if s:
                        ns = s["nodes"]
                        row[f"{prefix}_faults_per_node"] = sum(n["readFaults"] + n["writeFaults"] for n in ns) / len(ns)
                        row[f"{prefix}_mb_per_node"] = sum(n["bytesSent"] + n["bytesReceived"] for n in ns) / len(ns) / 1e6
                        for q in ("p50", "p90", "p99"):
                            row[f"{prefix}_wait_{q}_us"] = max(n["waitNs"][q] for n in ns) / 1e3
                        row[f"{prefix}_ping_pong"] = [
                            {"page": p["name"], "writers": p["writers"], "moves": p["losses"]}
                            for p in s.get("pingPongPages", [])]
                row["fraction_of_native"] = row["dsm_fraction_of_native"]
                row["dsm_over_native"] = median["dsm"] / median["native"]
                row["floor_us"] = args.floor_us
                rows.append(row)
                print_row(row)
                sys.stdout.flush()
    return rows


HEADER = ("program", "size", "nodes", "native s", "spread", "dsm s", "spread", "native x", "dsm x", "frac",
          "dsm/nat", "faults/node", "MB/node", "wait p50", "p90", "p99", "p90/floor")
HOSTS_HEADER = ("hosts s", "spread", "hosts x", "hosts frac", "hosts p50")


def print_header(hosts, floor_us):
    print("times and speed-ups are medians of the repeats; spread = (slowest - fastest) / median; fault wait"
          f" percentiles of the median run (slowest node); floor = raw uffd copy + loopback round trip, {floor_us:.1f} us"
          " in this invocation")
    print(" ".join(f"{h:>11}" for h in HEADER + (HOSTS_HEADER if hosts else ())))


def print_row(r):
    cells = [r["program"], str(r["size"]), str(r["nodes"]), f"{r['native_s']:.4f}", f"{100 * r['native_spread']:.0f}%",
             f"{r['dsm_s']:.4f}", f"{100 * r['dsm_spread']:.0f}%",
             f"{r['native_speedup']:.2f}", f"{r['dsm_speedup']:.2f}", f"{r['fraction_of_native']:.2f}",
             f"{r['dsm_over_native']:.2f}", f"{r.get('dsm_faults_per_node', 0):.0f}", f"{r.get('dsm_mb_per_node', 0):.2f}",
             f"{r.get('dsm_wait_p50_us', 0):.1f}us", f"{r.get('dsm_wait_p90_us', 0):.1f}us",
             f"{r.get('dsm_wait_p99_us', 0):.1f}us", f"{r.get('dsm_wait_p90_us', 0) / r['floor_us']:.2f}"]
    if "hosts_s" in r:
        cells += [f"{r['hosts_s']:.4f}", f"{100 * r['hosts_spread']:.0f}%", f"{r['hosts_speedup']:.2f}", f"{r['hosts_fraction_of_native']:.2f}",
                  f"{r.get('hosts_wait_p50_us', 0):.1f}us"]
    print(" ".join(f"{c:>11}" for c in cells))
    if r.get("dsm_ping_pong"):
        print("            ping-pong: " + ", ".join(
            f"{p['page']} (nodes {','.join(map(str, p['writers']))}, moved {p['moves']})" for p in r["dsm_ping_pong"][:3]))


def measure_floor():
    out = subprocess.run([os.path.join(BIN, "floor")], capture_output=True, text=True, check=True).stdout
    return {k: float(v) for k, v in re.findall(r"(\w+)=([0-9.]+)", out)}


def fault_latency(nodes, dsm_args, delay_us=0):
    # One operation at a time: no neighbour prefetch, no readahead in these figures.
    r = subprocess.run([DSMRUN, "-n", str(nodes), *dsm_args, "--spmd", os.path.join(BIN, "fault_latency")],
                       env=dict(os.environ, DSM_PREFETCH_BUDDY="0", DSM_PREFETCH="0", DSM_DELAY_US=str(delay_us)),
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError("fault_latency failed: " + r.stderr)
    lat = {}
    for line in r.stdout.splitlines():
        for k, v in re.findall(r"(\w+)_us=([0-9.]+)", line):
            lat[k] = float(v)
    return lat


def latencies(args):
    results = []
    places = [("here", args.dsm_args)] + ([("hosts", args.dsm_args + args.testbed_args)] if args.testbed_args else [])
    for _ in range(args.repeat):
        fl = measure_floor()
        for nodes in [n for n in args.nodes if n >= 2]:
            for where, extra in places:
                results.append({"nodes": nodes, "where": where, "floor": fl, "latency": fault_latency(nodes, extra)})
    # Per place, node count and operation: the median ratio to the floor
    # measured in the same repeat.
    groups = {}
    for r in results:
        floor = r["floor"]["sum_us"]
        for op, us in r["latency"].items():
            groups.setdefault((r["where"], r["nodes"], op), []).append((us / floor, us, r["floor"]))
    out = []
    for (where, nodes, op), samples in groups.items():
        ordered = sorted(samples, key=lambda x: x[0])
        ratio, us, floor = ordered[len(samples) // 2]
        out.append({"where": where, "nodes": nodes, "op": op, "us": us, "floor_us": floor["sum_us"],
                    "uffd_copy_us": floor["uffd_copy_us"], "tcp_rtt_us": floor["tcp_rtt_us"], "ratio": ratio,
                    "ratio_min": ordered[0][0], "ratio_max": ordered[-1][0]})
    print("\nfault path (floor = raw uffd copy + loopback TCP round trip, measured in the same repeat; medians,"
          " with the range of the repeats' ratios)")
    print(f"{'where':>6} {'nodes':>6} {'operation':>16} {'us':>8} {'floor us':>9} {'ratio':>6} {'range':>11}")
    out.sort(key=lambda x: (x["where"], x["nodes"], x["op"]))
    for b in out:
        print(f"{b['where']:>6} {b['nodes']:>6} {b['op']:>16} {b['us']:>8.1f} {b['floor_us']:>9.1f} {b['ratio']:>6.2f}"
              f" {b['ratio_min']:>5.2f}-{b['ratio_max']:<5.2f}")
    return out


def distance(args):
    """Speed-up on 2 nodes and the read miss at emulated round trips: every
    frame waits DSM_DELAY_US = (round trip - loopback's own) / 2 before it
    leaves, in each direction. Medians of --repeat interleaved runs."""
    floor_rtt = statistics.median(measure_floor()["tcp_rtt_us"] for _ in range(3))
    rows = []
    print(f"\nemulated distance (loopback round trip here: {floor_rtt:.1f} us; medians of {args.repeat})")
    print(f"{'rtt us':>7} {'delay us':>9} {'program':>8} {'size':>5} {'native x':>9} {'dsm x':>6} {'frac':>5} {'read miss us':>13}")
    for rtt in args.round_trips:
        delay = max(0, round((rtt - floor_rtt) / 2))
        miss = statistics.median(fault_latency(2, args.dsm_args, delay)["read_miss"] for _ in range(args.repeat))
        for spec in args.programs:
            program, _, model = spec.partition("@")
            dsm_args = (["--consistency", model] if model else []) + args.dsm_args
            for size in args.sizes:
                times = {"native1": [], "native2": [], "dsm1": [], "dsm2": []}
                for _ in range(args.repeat):
                    times["native1"].append(run_native(program, 1, size)[0])
                    times["native2"].append(run_native(program, 2, size)[0])
                    times["dsm1"].append(run_dsm(program, 1, size, dsm_args, delay)[0])
                    times["dsm2"].append(run_dsm(program, 2, size, dsm_args, delay)[0])
                m = {k: statistics.median(v) for k, v in times.items()}
                row = {"rtt_us": rtt, "delay_us": delay, "program": spec, "size": size,
                       "native_speedup": m["native1"] / m["native2"], "dsm_speedup": m["dsm1"] / m["dsm2"],
                       "read_miss_us": miss}
                row["fraction_of_native"] = row["dsm_speedup"] / row["native_speedup"]
                rows.append(row)
                print(f"{rtt:>7} {delay:>9} {program:>8} {size:>5} {row['native_speedup']:>9.2f} {row['dsm_speedup']:>6.2f} "
                      f"{row['fraction_of_native']:>5.2f} {miss:>13.1f}")
                sys.stdout.flush()
    return rows


def testbed_args(hosts):
    """Makes `hosts` namespace hosts (Tests/Hosts/testbed, root only) and
    returns the dsmrun options that spread the nodes over them."""
    name = "dsmb%dh" % os.getpid()
    script = os.path.join(ROOT, "Tests", "Hosts", "testbed")
    sh([script, "up", name, str(hosts), "10.216.0"])
    import atexit
    atexit.register(lambda: subprocess.run([script, "down", name]))
    return ["--hosts", ",".join(f"{name}{i}" for i in range(1, hosts + 1)),
            "--rsh", os.path.join(ROOT, "Tests", "Hosts", "rsh"), "--iface", "10.216.0.0/24"]


def transport():
    """epoll + send/recv (the runtime's transport) against io_uring, same run."""
    exe = os.path.join(BIN, "uring_pingpong")
    if not os.path.exists(exe):
        print("\n(io_uring comparison skipped: apt-get install liburing-dev)")
        return None
    out = subprocess.run([exe], capture_output=True, text=True, check=True).stdout
    values = {k: float(v) for k, v in re.findall(r"(\w+)=([0-9.]+)", out)}
    print(f"\ntransport round trip (32 B request, 4 KiB answer): epoll {values['epoll_us']:.1f} us, "
          f"io_uring {values['uring_us']:.1f} us, io_uring/epoll {values['ratio']:.2f}")
    return values


def plot(rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"(no plot: pip install matplotlib to get {path})")
        return
    programs = sorted({r["program"] for r in rows})
    fig, axes = plt.subplots(1, len(programs), figsize=(6 * len(programs), 4.5), squeeze=False)
    for ax, program in zip(axes[0], programs):
        sizes = sorted({r["size"] for r in rows if r["program"] == program})
        for size in sizes:
            rs = sorted((r for r in rows if r["program"] == program and r["size"] == size), key=lambda r: r["nodes"])
            nodes = [r["nodes"] for r in rs]
            line, = ax.plot(nodes, [r["dsm_speedup"] for r in rs], marker="o", label=f"dsm n={size}")
            ax.plot(nodes, [r["native_speedup"] for r in rs], marker="x", linestyle="--", color=line.get_color(),
                    label=f"native n={size}")
        ax.set_title(f"{program}: speed-up over 1 node")
        ax.set_xlabel("nodes")
        ax.set_ylabel("speed-up")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--programs", default="mgs,matmul",
                   help="comma-separated; program@release runs it under --consistency release")
    p.add_argument("--sizes", default="256,512,1024")
    p.add_argument("--nodes", default="1,2,3,4")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-build", action="store_true", help="do not run swift build")
    p.add_argument("--no-latency", action="store_true")
    p.add_argument("--no-speedup", action="store_true", help="only the fault-path and transport figures")
    p.add_argument("--dsm-args", default="", help="extra dsmrun options, e.g. --bind")
    p.add_argument("--testbed", type=int, default=0,
                   help="also run every configuration with its nodes spread over this many network-namespace hosts "
                        "(root; Tests/Hosts/testbed), side by side with the single-host run")
    p.add_argument("--round-trips", default="",
                   help="emulated round trips in us (e.g. 15,50,200,1000): 2-node speed-up and read miss at each")
    args = p.parse_args()
    args.programs = args.programs.split(",")
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.nodes = [int(s) for s in args.nodes.split(",")]
    args.dsm_args = args.dsm_args.split()
    args.round_trips = [int(x) for x in args.round_trips.split(",") if x]
    if 1 not in args.nodes:
        args.nodes = [1] + args.nodes
    build(args.no_build)
    # With a test bed, every configuration also runs with its nodes spread
    # over the namespace hosts ("hosts" columns), interleaved with the rest.
    args.testbed_args = testbed_args(args.testbed) if args.testbed else []
    started = time.time()
    args.floor_us = statistics.median(measure_floor()["sum_us"] for _ in range(3))
    print_header(bool(args.testbed_args), args.floor_us)
    rows = [] if args.no_speedup else speedups(args)
    lat = [] if args.no_latency else latencies(args)
    far = distance(args) if args.round_trips else []
    uring = None if args.no_latency else transport()
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "bench.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
        w.writeheader()
        w.writerows(rows)
    with open(os.path.join(RESULTS, "bench.json"), "w") as f:
        json.dump({"speedup": rows, "latency": lat, "distance": far, "transport": uring,
                   "seconds": time.time() - started}, f, indent=1)
    if rows:
        plot(rows, os.path.join(RESULTS, "speedup.png"))


if __name__ == "__main__":
    main()
