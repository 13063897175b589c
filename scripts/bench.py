#!/usr/bin/env python3
"""Benchmark rollcall on loopback (Python 3 standard library only).

Join latency: for each cluster size N, in each run, start peers 1..N-1, wait
until they have exchanged with one another (each logged `(N-1/N)`), then
spawn peer N and measure from just before spawning it to the last `READY`
line read on any peer's stdout. For every peer it also records the datagrams
sent until READY (`sent (\\d+) datagrams` in its READY log line on stderr)
and its peak resident memory (VmHWM from /proc/PID/status, read after READY
and before stopping it).

Idle CPU: 5 peers at the default heartbeat interval; once all are READY they
keep running for --cpu-seconds while their CPU time (utime+stime from
/proc/PID/stat, and the finer-grained /proc/PID/task/*/schedstat) is sampled.
The result is a percentage of one core per peer.

Prints a table and writes a CSV (one row per size and run, plus a `cpu` row).
Every peer is stopped in a `finally` block; every wait is bounded.

usage: scripts/bench.py [--runs 5] [--sizes 2,5,16,64] [--bin PATH]
                        [--csv PATH] [--cpu-seconds 10] [--base-port 27000]
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SENT = re.compile(r"sent (\d+) datagrams")
EXCHANGED = re.compile(r"exchanged with .*\((\d+)/(\d+)\)")
# The progress report a peer logs every 5 s, and at once on SIGUSR1.
PROGRESS = re.compile(r"waiting for READY after .*: (\d+) of (\d+) peers missing")
BOUND = "bound to"
CLK_TCK = os.sysconf("SC_CLK_TCK")
CSV_FIELDS = [
    "kind",
    "peers",
    "run",
    "status",
    "latency_ms",
    "warmup_ms",
    "datagrams_median",
    "datagrams_max",
    "datagrams_total",
    "vmhwm_kib_max",
    "cpu_window_s",
    "cpu_pct_median",
    "cpu_pct_max",
    "cpu_sched_pct_median",
    "cpu_sched_pct_max",
]

# Exit statuses after SIGTERM that the contract allows (143, or death by the signal).
TERM_OK = (143, -signal.SIGTERM)


class RunFailed(Exception):
    """A run that could not be measured; the message says why."""


class Peer:
    def __init__(self, index: int, name: str, proc: subprocess.Popen):
        self.index = index
        self.name = name
        self.proc = proc
        self.partial = {"out": b"", "err": b""}
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.ready_at: float | None = None  # time.perf_counter() when READY was read
        self.bound = False
        self.exchanged = 1  # k of the last `exchanged with NAME (k/N)`; this peer counts
        self.missing: int | None = None  # from the last progress report
        self.sent: int | None = None  # datagrams sent until READY
        self.open_pipes = 2
        self.exit_status: int | None = None

    @property
    def label(self) -> str:
        return f"peer{self.index} ({self.name})"

    def line(self, stream: str, text: str, now: float) -> None:
        if stream == "out":
            self.stdout.append(text)
            if text == "READY" and self.ready_at is None:
                self.ready_at = now
            return
        self.stderr.append(text)
        if BOUND in text:
            self.bound = True
        m = EXCHANGED.search(text)
        if m:
            self.exchanged = max(self.exchanged, int(m.group(1)))
        m = PROGRESS.search(text)
        if m:
            self.missing = int(m.group(1))
        m = SENT.search(text)
        if m and self.sent is None:
            self.sent = int(m.group(1))

    def tail(self, n: int = 5) -> str:
        lines = self.stderr[-n:] or ["(nothing on stderr)"]
        return "\n".join(f"      {self.label}: {line}" for line in lines)


class Cluster:
    """Peers started from one hosts file; their stdout and stderr are read
    through one selector, line by line, as they arrive."""

    def __init__(self, binary: str, ports: list[int], workdir: Path, wait: float):
        self.binary = binary
        self.names = [f"127.0.0.1:{p}" for p in ports]
        self.wait = wait
        self.hosts = workdir / "hosts"
        self.hosts.write_text("".join(n + "\n" for n in self.names))
        self.sel = selectors.DefaultSelector()
        self.peers: list[Peer] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLCALL_")}

    def spawn(self, index: int) -> Peer:
        name = self.names[index - 1]
        proc = subprocess.Popen(
            [self.binary, "--hosts", str(self.hosts), "--name", name],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
        )
        peer = Peer(index, name, proc)
        self.peers.append(peer)
        for stream, pipe in (("out", proc.stdout), ("err", proc.stderr)):
            os.set_blocking(pipe.fileno(), False)
            self.sel.register(pipe, selectors.EVENT_READ, (peer, stream))
        return peer

    def pump(self, timeout: float) -> None:
        """Read whatever the peers wrote within `timeout` seconds."""
        if not self.sel.get_map():
            time.sleep(max(timeout, 0))  # nothing left to read: just let the time pass
            return
        for key, _ in self.sel.select(max(timeout, 0)):
            peer, stream = key.data
            now = time.perf_counter()
            try:
                data = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            if not data:
                self.sel.unregister(key.fileobj)
                key.fileobj.close()
                peer.open_pipes -= 1
                data = b"\n" if peer.partial[stream] else b""
                if not data:
                    continue
            chunks = (peer.partial[stream] + data).split(b"\n")
            peer.partial[stream] = chunks.pop()
            for chunk in chunks:
                peer.line(stream, chunk.decode(errors="replace").rstrip("\r"), now)

    def wait_for(self, done, what: str, peers: list[Peer] | None = None, poke=None) -> None:
        """Pump until done() is true; fail if a peer exits or `wait` runs out.
        `poke`, if given, is called every 0.1 s meanwhile."""
        deadline = time.monotonic() + self.wait
        watched = self.peers if peers is None else peers
        while not done():
            for p in watched:
                if p.open_pipes == 0 or p.proc.poll() is not None:
                    self.pump(0)
                    rc = p.proc.wait(timeout=self.wait)
                    raise RunFailed(
                        f"{p.label} exited with code {rc} while waiting for {what}\n{p.tail()}"
                    )
            left = deadline - time.monotonic()
            if left <= 0:
                stuck = [p for p in watched if p.ready_at is None] or watched
                raise RunFailed(
                    f"timed out after {self.wait:g}s waiting for {what}\n"
                    + "\n".join(p.tail(3) for p in stuck[:4])
                )
            if poke is not None:
                poke()
            self.pump(min(left, 0.5 if poke is None else 0.1))

    def stop(self) -> list[str]:
        """SIGTERM every peer, SIGKILL after 3 s, reap, read their last lines.
        Returns notes about peers that did not exit as the contract says."""
        notes = []
        signalled = []
        for p in self.peers:
            if p.proc.poll() is None:
                p.proc.send_signal(signal.SIGTERM)
                signalled.append(p)
        deadline = time.monotonic() + 3
        for p in signalled:
            try:
                p.exit_status = p.proc.wait(timeout=max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                p.proc.kill()
                p.exit_status = p.proc.wait()
                notes.append(f"{p.label} still running 3s after SIGTERM (killed)")
                continue
            if p.exit_status not in TERM_OK:
                notes.append(f"{p.label} exited with {p.exit_status} after SIGTERM (expected 143)")
        deadline = time.monotonic() + 2
        while self.sel.get_map() and time.monotonic() < deadline:
            self.pump(0.1)
        for key in list(self.sel.get_map().values()):
            self.sel.unregister(key.fileobj)
            key.fileobj.close()
        self.sel.close()
        return notes


def vmhwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RunFailed(f"no VmHWM in /proc/{pid}/status")


def cpu_ticks(pid: int) -> int:
    """utime+stime of the whole process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def sched_ns(pid: int) -> int:
    """Time on CPU of all the process's threads, in ns (schedstat)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def check_stdout(peers: list[Peer], notes: list[str]) -> None:
    for p in peers:
        if p.stdout != ["READY"]:
            notes.append(f"{p.label} stdout was {p.stdout!r} (expected exactly ['READY'])")


def join_run(binary: str, n: int, ports: list[int], wait: float, notes: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="rollcall-bench.") as tmp:
        cluster = Cluster(binary, ports, Path(tmp), wait)
        try:
            first = [cluster.spawn(i) for i in range(1, n)]
            t_warm = time.perf_counter()
            # The first N-1 peers are bound and have exchanged with each other:
            # each says so per pair in a small cluster; in a large one (those
            # lines are at debug level) its progress report, asked for with
            # SIGUSR1, names only the peer not started yet.
            def warm(p: Peer) -> bool:
                return p.bound and (p.exchanged >= n - 1 or p.missing == 1)

            def ask() -> None:
                for p in first:
                    if p.bound and not warm(p):
                        os.kill(p.proc.pid, signal.SIGUSR1)

            cluster.wait_for(
                lambda: all(warm(p) for p in first),
                f"the first {n - 1} peers to exchange with one another",
                poke=ask,
            )
            warmup = time.perf_counter() - t_warm
            early = [p.label for p in first if p.ready_at is not None]
            if early:
                raise RunFailed(f"READY before the last peer started: {', '.join(early)}")
            t0 = time.perf_counter()
            cluster.spawn(n)
            cluster.wait_for(lambda: all(p.ready_at is not None for p in cluster.peers), "READY")
            latency = max(p.ready_at for p in cluster.peers) - t0
            hwm = [vmhwm_kib(p.proc.pid) for p in cluster.peers]
            # The READY log line may come a moment after READY on stdout.
            try:
                cluster.wait_for(
                    lambda: all(p.sent is not None for p in cluster.peers),
                    "the `sent N datagrams` READY log lines",
                )
            except RunFailed:
                missing = [p.label for p in cluster.peers if p.sent is None]
                notes.append(f"N={n}: no `sent N datagrams` log line from {', '.join(missing)}")
        finally:
            notes.extend(cluster.stop())
        check_stdout(cluster.peers, notes)
    sent = [p.sent for p in cluster.peers if p.sent is not None]
    return {
        "latency_ms": latency * 1000,
        "warmup_ms": warmup * 1000,
        "datagrams": sent,
        "datagrams_median": statistics.median(sent) if sent else None,
        "datagrams_max": max(sent) if sent else None,
        "datagrams_total": sum(sent) if sent else None,
        "vmhwm_kib_max": max(hwm),
    }


def cpu_run(binary: str, ports: list[int], seconds: float, wait: float, notes: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="rollcall-bench.") as tmp:
        cluster = Cluster(binary, ports, Path(tmp), wait)
        try:
            for i in range(1, len(ports) + 1):
                cluster.spawn(i)
            cluster.wait_for(
                lambda: all(p.ready_at is not None and p.sent is not None for p in cluster.peers),
                "READY",
            )
            pids = [p.proc.pid for p in cluster.peers]
            t_start = time.monotonic()
            ticks0 = [cpu_ticks(pid) for pid in pids]
            ns0 = [sched_ns(pid) for pid in pids]
            # The measurement window: keep reading the peers' output meanwhile.
            end = t_start + seconds
            while (left := end - time.monotonic()) > 0:
                cluster.pump(min(left, 0.5))
                for p in cluster.peers:
                    if p.proc.poll() is not None:
                        raise RunFailed(f"{p.label} exited with {p.proc.returncode} during the window\n{p.tail()}")
            ticks1 = [cpu_ticks(pid) for pid in pids]
            ns1 = [sched_ns(pid) for pid in pids]
            window = time.monotonic() - t_start
            hwm = [vmhwm_kib(pid) for pid in pids]
        finally:
            notes.extend(cluster.stop())
        check_stdout(cluster.peers, notes)
    ticks = [b - a for a, b in zip(ticks0, ticks1)]
    pct = [t / CLK_TCK / window * 100 for t in ticks]
    sched_pct = [(b - a) / 1e9 / window * 100 for a, b in zip(ns0, ns1)]
    return {
        "window": window,
        "ticks": ticks,
        "pct": pct,
        "sched_pct": sched_pct,
        "vmhwm_kib_max": max(hwm),
    }


def fmt_mem(kib: int) -> str:
    return f"{kib} KiB ({kib / 1024:.1f} MiB)"


def fmt_num(x) -> str:
    if x is None:
        return "-"
    return f"{x:g}" if isinstance(x, (int, float)) and float(x).is_integer() else f"{x:.1f}"


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}")
    if not sizes or any(n < 2 for n in sizes):
        raise argparse.ArgumentTypeError("every size must be at least 2 peers")
    return sizes


def main() -> int:
    ap = argparse.ArgumentParser(
        description="Measure rollcall join latency, datagrams, memory and idle CPU on loopback."
    )
    ap.add_argument("--runs", type=int, default=5, help="runs per cluster size (default 5)")
    ap.add_argument(
        "--sizes", type=parse_sizes, default=[2, 5, 16, 64], help="cluster sizes (default 2,5,16,64)"
    )
    ap.add_argument(
        "--bin",
        default=os.environ.get("ROLLCALL_BIN", str(ROOT / "target/release/rollcall")),
        help="rollcall binary (default $ROLLCALL_BIN or target/release/rollcall)",
    )
    ap.add_argument(
        "--csv", default=str(ROOT / "target/bench/bench.csv"), help="CSV output (default target/bench/bench.csv)"
    )
    ap.add_argument(
        "--cpu-seconds", type=float, default=10.0, help="idle CPU window for 5 peers; 0 skips it (default 10)"
    )
    ap.add_argument(
        "--base-port", type=int, default=27000, help="first port used is BASE+1 (default 27000, above the tests')"
    )
    ap.add_argument("--wait", type=float, default=30.0, help="bound on every wait, in seconds (default 30)")
    args = ap.parse_args()

    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if args.cpu_seconds < 0 or args.wait <= 0:
        ap.error("--cpu-seconds must be >= 0 and --wait > 0")
    binary = args.bin
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        print(f"bench: {binary}: no such executable (run 'make build', or pass --bin)", file=sys.stderr)
        return 2
    # Every (size, run) gets its own ports, so no run can hear an earlier one.
    needed = sum(args.sizes) * args.runs + (5 if args.cpu_seconds > 0 else 0)
    if not 1024 <= args.base_port or args.base_port + needed > 65535:
        ap.error(f"--base-port: ports {args.base_port + 1}..{args.base_port + needed} must lie in 1025..65535")

    # SIGTERM (and SIGHUP) unwind through the finally blocks like Ctrl-C does.
    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    shown_bin = Path(binary).resolve()
    if shown_bin.is_relative_to(Path.cwd()):
        shown_bin = shown_bin.relative_to(Path.cwd())
    print(f"rollcall bench: {shown_bin}, {args.runs} runs per size, loopback, default interval")
    print(
        "join latency = spawn of the last peer (the other N-1 already exchanged with one another)"
        " -> last READY read on any peer's stdout"
    )
    notes: list[str] = []
    rows: list[dict] = []
    results: dict[int, list[dict]] = {}
    failures = 0
    port = args.base_port
    for n in args.sizes:
        results[n] = []
        for run in range(1, args.runs + 1):
            ports = list(range(port + 1, port + n + 1))
            port += n
            prefix = f"  N={n:<3} run {run}/{args.runs}:"
            try:
                r = join_run(binary, n, ports, args.wait, notes)
            except RunFailed as e:
                failures += 1
                print(f"{prefix} FAILED: {e}", flush=True)
                rows.append({"kind": "join", "peers": n, "run": run, "status": f"failed: {str(e).splitlines()[0]}"})
                continue
            results[n].append(r)
            print(
                f"{prefix} {r['latency_ms']:8.2f} ms   (warm-up {r['warmup_ms']:7.1f} ms)"
                f"   datagrams/peer median {fmt_num(r['datagrams_median'])} max {fmt_num(r['datagrams_max'])}"
                f"   VmHWM max {r['vmhwm_kib_max']} KiB",
                flush=True,
            )
            rows.append(
                {
                    "kind": "join",
                    "peers": n,
                    "run": run,
                    "status": "ok",
                    "latency_ms": f"{r['latency_ms']:.3f}",
                    "warmup_ms": f"{r['warmup_ms']:.1f}",
                    "datagrams_median": fmt_num(r["datagrams_median"]),
                    "datagrams_max": fmt_num(r["datagrams_max"]),
                    "datagrams_total": fmt_num(r["datagrams_total"]),
                    "vmhwm_kib_max": r["vmhwm_kib_max"],
                }
            )

    cpu = None
    if args.cpu_seconds > 0:
        ports = list(range(port + 1, port + 6))
        print(f"  idle CPU: 5 peers, default interval, {args.cpu_seconds:g} s after READY ...", flush=True)
        try:
            cpu = cpu_run(binary, ports, args.cpu_seconds, args.wait, notes)
            rows.append(
                {
                    "kind": "cpu",
                    "peers": 5,
                    "run": 1,
                    "status": "ok",
                    "vmhwm_kib_max": cpu["vmhwm_kib_max"],
                    "cpu_window_s": f"{cpu['window']:.2f}",
                    "cpu_pct_median": f"{statistics.median(cpu['pct']):.4f}",
                    "cpu_pct_max": f"{max(cpu['pct']):.4f}",
                    "cpu_sched_pct_median": f"{statistics.median(cpu['sched_pct']):.4f}",
                    "cpu_sched_pct_max": f"{max(cpu['sched_pct']):.4f}",
                }
            )
        except RunFailed as e:
            failures += 1
            print(f"  idle CPU: FAILED: {e}", flush=True)
            rows.append({"kind": "cpu", "peers": 5, "run": 1, "status": f"failed: {str(e).splitlines()[0]}"})

    # The table.
    print()
    header = (
        f"{'peers':>5}  {'runs ok':>7}  {'join latency ms: median (min..max)':>36}"
        f"  {'datagrams/peer: median / max':>28}  {'peak RSS/peer (VmHWM max)':>26}"
    )
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        rs = results[n]
        if not rs:
            print(f"{n:>5}  {0:>3}/{args.runs:<3}  {'(all runs failed)':>36}")
            continue
        lat = [r["latency_ms"] for r in rs]
        sent = [d for r in rs for d in r["datagrams"]]
        lat_s = f"{statistics.median(lat):.2f} ({min(lat):.2f}..{max(lat):.2f})"
        sent_s = f"{fmt_num(statistics.median(sent))} / {max(sent)}" if sent else "-"
        mem_s = fmt_mem(max(r["vmhwm_kib_max"] for r in rs))
        print(f"{n:>5}  {len(rs):>3}/{args.runs:<3}  {lat_s:>36}  {sent_s:>28}  {mem_s:>26}")
    if cpu is not None:
        pct, spct = cpu["pct"], cpu["sched_pct"]
        print()
        print(
            f"idle CPU, 5 peers at the default interval over {cpu['window']:.1f} s after READY:"
            f" {statistics.median(pct):.3f}% of one core per peer (median; max {max(pct):.3f}%)"
            f" from utime+stime ({sum(cpu['ticks'])} ticks in all at {CLK_TCK} Hz);"
            f" schedstat: median {statistics.median(spct):.4f}%, max {max(spct):.4f}%"
        )

    csv_path = Path(args.csv)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(rows)
    shown_csv = csv_path.resolve()
    if shown_csv.is_relative_to(Path.cwd()):
        shown_csv = shown_csv.relative_to(Path.cwd())
    print(f"\nwrote {shown_csv}")

    if notes:
        print("\nnotes (behaviour that differs from the contract):")
        for note in dict.fromkeys(notes):
            print(f"  - {note}")
    if failures:
        print(f"\nbench: {failures} run(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\nbench: interrupted", file=sys.stderr)
        sys.exit(130)
