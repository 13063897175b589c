#!/usr/bin/env python3
"""Benchmark rollcall side by side with three yardsticks, in one run.

Python 3 standard library, plus matplotlib for the chart (installed with
pip when missing; without it the chart is skipped with a line saying so).

Systems (--systems):
  rollcall  the binary under test (--bin), through its CLI only.
  static    the same sources linked statically (--static-bin, `make
            static`): the binary of the container image. It starts
            without the dynamic loader and maps no shared libc, so
            process start and resident memory are smaller.
  classic   bench/classic.c (--classic; `make bench` builds it with gcc -O2
            into target/bench/classic, and this script does when missing):
            a select() loop that heartbeats every 2 s each peer that has not
            acknowledged it yet, and acknowledges every heartbeat.
  floor     the same program with --reply-first: it also answers a peer's
            first heartbeat with its own at once, so a late starter is
            answered within a round trip (the best a heartbeat design does).
  serf      HashiCorp Serf agents (`serf` on PATH, Debian package 0.9.4;
            `make bench` installs it when root), profile lan (its defaults).
            Agent i binds 127.0.0.1 (or its namespace's address) on a port
            of its own with an RPC port of its own, and joins agent 1 with
            -retry-join (retried every 1 s; agent 1 is started first and
            awaited, so on loopback the first attempt succeeds). Its READY
            is the moment its own log (stdout, read line by line like
            rollcall's READY) has announced
            `serf: EventMemberJoin` for all N members, counting a member
            out again on EventMemberFailed/Leave/Reap: the agent has seen
            all N alive. No RPC polling and no event-handler processes, so
            the timestamp costs nothing extra and is as fresh as rollcall's.
            Now and then (two or three runs in ten at 64 and 128 agents on 2
            cores) the gossip of a join misses an agent, which then learns
            of that member only at its next push-pull sync (every 30 s,
            scaled up above 32 members: 60 s at 64, 90 s at 128); `serf
            members` on that agent confirms the member is missing from its
            view. Serf's waits are therefore bounded by --serf-wait (90 s)
            rather than --wait, so that such a run shows its real figure
            (at 128 it may still time out, and is reported so). Start and
            join run Serf up to --serf-max agents (default 64: above, its
            slow runs alone would take most of the 20 minutes); the idle
            scenario runs it at --idle-cluster (128) too, once.

Scenarios (--scenarios):
  start  all N peers started back to back (agent 1 of Serf awaited first);
         figure = last peer's start (just before spawning it) -> last READY
         read on any peer's stdout. N = --sizes (default 2,5,16,64,128,256;
         --with-512 adds 512).
  join   peers 1..N-1 started and exchanging with one another (rollcall and
         classic/floor say so in their logs, rollcall when asked with
         SIGUSR1; Serf agents once they see N-1 alive), then peer N;
         figure = its spawn -> last READY. The warm-up of classic ends at
         one of its 2 s ticks (the heartbeats lost to peers not yet started
         are resent then), so its joiner starts just after a tick and its
         figure is about one whole interval: its worst case, which is also
         what its all-started figure shows.
  loss   8 and 16 peers, each in a network namespace of its own (veth pair
         to a bridge in one more namespace), nftables dropping 10% or 30% of
         the IP packets arriving in every peer namespace (`numgen random
         mod 100 < P counter drop`: UDP, and the TCP of Serf's joins and
         push-pull syncs alike; ARP is not needed, the neighbours are
         permanent entries). rollcall runs with -i 1s, classic and
         floor with their defaults. Every run of every system of one
         configuration runs at once, each cluster in namespaces (and a
         bridge) of its own: their figures are seconds of retransmission
         timers, which the few ms of CPU the others take do not move, and
         the scenario takes a minute instead of ten. Needs root, `ip` and
         `nft`; skipped with a line saying so otherwise.
  idle   CPU of READY peers over --cpu-seconds at the default interval: 5
         peers (per peer, % of one core) and a whole --idle-cluster-peer
         cluster (default 128: the sum over its peers, % of one core), from
         schedstat (utime+stime, in ticks, in the CSV too). The clusters of
         up to 16 peers of all systems share one window (idle peers barely
         compete, and CPU time is counted per process); each bigger one
         has a window to itself.
  sim    `cargo test --release --lib machine::scale::figures -- --ignored
         --nocapture` at each of --sim-peers (default 1000; --quick 500);
         lines `SIM peers=<n> loss=<pct> ready_ms=<f> datagrams=<n>
         minimum=<n>` go into the CSV as they are (skipped with a line
         when the test does not exist). Above 4 000 nodes only the runs
         started within a second (0% and 20% loss): started together,
         every first heartbeat is in flight at once. A size whose n²
         records (about 210 bytes a pair) do not fit in the memory
         available is skipped with a line saying how much it needs:
         10 000 needs about 21 GB and runs for tens of minutes.

Figures per run (CSV rows), median/min/max over runs (summary CSV, table):
  latency_ms     as defined per scenario above.
  datagrams      sent per peer until its READY: the `sent N datagrams` of
                 its READY log line (rollcall, classic, floor). Serf logs no
                 such thing: its count is the kernel's, UDP datagrams sent
                 from the agent's port (an nftables set with a counter per
                 source port in the loopback namespace, an output counter in
                 each peer namespace under loss) read once just after the
                 LAST agent's READY, so Serf's figure counts a little past
                 each agent's own READY (column datagrams_basis says so).
                 minimum = 3 datagrams per pair of peers, i.e. 1.5*(N-1) per
                 peer (a heartbeat, a heartbeat carrying the
                 acknowledgement, an acknowledgement); ratio = median /
                 minimum.
  ready_cpu_ms   CPU time of the peer until READY (schedstat of all its
                 threads, read when its READY is read).
  vmhwm_kib      peak RSS per peer (VmHWM), read after the last READY.
  rcvbuf_errors  UdpRcvbufErrors (/proc/net/snmp) during the run. Every
                 loopback scenario runs in a network namespace of its own
                 (a fresh `lo`, created by this script) when root and `ip`
                 allow, so the counter is the run's own; otherwise it is the
                 host's, which other programs share (rcvbuf_scope says
                 which). Under loss: the sum over the peers' namespaces.
  udp_out_total  UDP datagrams sent in the run's namespace(s) until the last
                 READY: a cross-check of the per-peer counts.
  tcp_out_total  TCP segments sent likewise (Serf joins and syncs over TCP;
                 the others send none): the table adds them per agent.

Outputs (next to --csv, default target/bench/bench.csv): bench.csv (one row
per system, scenario, size and run, plus the simulator's rows),
bench-summary.csv (median/min/max per system, scenario and size),
bench.png (matplotlib: start latency against N, log-log, and the loss
scenarios, plus join latency and datagrams/minimum), bench.md (the Markdown
tables of the medians, also printed on stdout).

Hygiene: ports come from 40001..48999 (--base-port 40000), never from the
tests' 20000..39999, and every run takes ports of its own from a window that
starts at a random offset. Every peer runs in a session (process group) of
its own and is sent SIGTERM, then SIGKILL after 3 s, in a `finally`; every
namespace this script makes is named rcb<pid><random>-... and deleted in a
`finally` (Ctrl-C, SIGTERM and SIGHUP unwind through them too), after its
processes are gone. Every wait is bounded (--wait plus 0.25 s per peer;
--loss-wait under loss); a run that does not finish in time is reported as
such (status column) and the rest carry on. Exit status 1 if any run failed.

--quick (make bench QUICK=1): 3 runs, sizes 2,16,64, Serf at 2 and 16 only,
loss 30% at 8 peers only, idle windows of 2 s and a 16-peer idle cluster,
no simulator (after a commit, which build.rs embeds, its test binary is
rebuilt: 20-30 s; --scenarios ...,sim asks for it, bounded at 40 s); under
two minutes on 2 cores: 85-110 s here, plus make's rebuild of rollcall;
a loss cluster not READY within 45 s (Serf's tail at 30% reaches 30 s)
is reported as timed out.

usage: scripts/bench.py [--quick] [--runs 5] [--sizes 2,5,16,64,128,256]
                        [--systems rollcall,classic,floor,serf]
                        [--scenarios start,join,loss,idle,sim] [--bin PATH]
                        [--csv PATH] [--cpu-seconds 10] [--base-port 40000]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ctypes
import importlib
import importlib.util
import itertools
import json
import os
import random
import re
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SENT = re.compile(r"sent (\d+) datagrams?\b")
EXCHANGED = re.compile(r"exchanged with .*\((\d+)/(\d+)\)")
# The progress report rollcall logs every 5 s, and at once on SIGUSR1.
PROGRESS = re.compile(r"waiting for READY after .*: (\d+) of (\d+) peers missing")
BOUND = "bound to"
SERF_EVENT = re.compile(r"serf: EventMember(Join|Failed|Leave|Reap|Update): (\S+)")
SERF_RUNNING = "Serf agent running!"
SIM_LINE = re.compile(
    r"^SIM peers=(\d+) loss=([\d.]+) ready_ms=([\d.eE+-]+|NaN) datagrams=(\d+) minimum=(\d+)(?:\s.*)?$"
)
# Over how long the simulated nodes started (before it was printed: 1 s).
SIM_SPREAD = re.compile(r"\bspread_ms=([\d.]+)")
CLK_TCK = os.sysconf("SC_CLK_TCK")
SYSTEMS = ["rollcall", "static", "classic", "floor", "serf"]
SCENARIOS = ["start", "join", "loss", "idle", "sim"]
LOSS_CONFIGS = [(8, 10), (8, 30), (16, 10), (16, 30)]
QUICK_LOSS_CONFIGS = [(8, 30)]
PORT_WINDOW = 9000  # --base-port 40000: ports 40001..48999
EPHEMERAL = (49152, 60999)  # the ephemeral ports in our namespaces
CSV_FIELDS = [
    "system",
    "scenario",
    "peers",
    "loss_pct",
    "run",
    "status",
    "latency_ms",
    "warmup_ms",
    "datagrams_median",
    "datagrams_min",
    "datagrams_max",
    "datagrams_total",
    "datagrams_minimum",
    "datagrams_ratio",
    "datagrams_basis",
    "udp_out_total",
    "tcp_out_total",
    "ready_cpu_ms_median",
    "ready_cpu_ms_max",
    "vmhwm_kib_median",
    "vmhwm_kib_max",
    "rcvbuf_errors",
    "rcvbuf_scope",
    "cpu_window_s",
    "cpu_pct_median",
    "cpu_pct_max",
    "cpu_sched_pct_median",
    "cpu_sched_pct_max",
    "cpu_sched_pct_sum",
    "sim_datagrams",
    "sim_minimum",
    "sim_spread_ms",
]
SUMMARY_FIELDS = [
    "system",
    "scenario",
    "peers",
    "loss_pct",
    "runs",
    "runs_ok",
    "latency_ms_median",
    "latency_ms_min",
    "latency_ms_max",
    "datagrams_median",
    "datagrams_max",
    "datagrams_minimum",
    "datagrams_ratio",
    "datagrams_basis",
    "ready_cpu_ms_median",
    "ready_cpu_ms_max",
    "vmhwm_kib_median",
    "vmhwm_kib_max",
    "rcvbuf_errors_median",
    "rcvbuf_errors_max",
    "rcvbuf_scope",
    "cpu_sched_pct_median",
    "cpu_sched_pct_max",
    "cpu_sched_pct_sum_median",
]

# Exit statuses after SIGTERM that the contract allows (143, or death by the signal).
TERM_OK = (143, -signal.SIGTERM)
CLONE_NEWNET = 0x40000000


class RunFailed(Exception):
    """A run that could not be measured; the message says why."""


def say(text: str = "") -> None:
    print(text, flush=True)


# ---------------------------------------------------------------------------
# /proc readings
# ---------------------------------------------------------------------------


def vmhwm_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def cpu_ticks(pid: int) -> int:
    """utime+stime of the whole process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def sched_ns(pid: int) -> int:
    """Time on CPU of all the process's threads, in ns (schedstat)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def udp_snmp(path: str = "/proc/self/net/snmp") -> dict[str, int]:
    """The Udp: and Tcp: lines of /proc/net/snmp (of the network namespace of
    whoever `path` belongs to) as one dict: Udp.RcvbufErrors,
    Udp.OutDatagrams, Tcp.OutSegs, ..."""
    try:
        with open(path) as f:
            lines = [l.split() for l in f if l.startswith(("Udp:", "Tcp:"))]
    except (FileNotFoundError, ProcessLookupError):
        return {}
    out = {}
    for head, values in zip(lines[::2], lines[1::2]):
        proto = head[0].rstrip(":")
        out.update({f"{proto}.{k}": int(v) for k, v in zip(head[1:], values[1:]) if v.lstrip("-").isdigit()})
    return out


# ---------------------------------------------------------------------------
# Network namespaces
# ---------------------------------------------------------------------------

_libc = None


def setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(name: str | None):
    """Run the block (and whatever it spawns) in network namespace `name`,
    then come back to the namespace we were in. None: stay where we are."""
    if name is None:
        yield
        return
    back = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            setns(back)
    finally:
        os.close(back)


def run_cmd(argv: list[str], input_text: str | None = None, timeout: float = 60) -> str:
    out = subprocess.run(
        argv, input=input_text, capture_output=True, text=True, timeout=timeout, stdin=None if input_text else subprocess.DEVNULL
    )
    if out.returncode != 0:
        raise RunFailed(f"`{' '.join(argv)}` failed ({out.returncode}): {(out.stderr or out.stdout).strip()[:500]}")
    return out.stdout


def netns_missing() -> str | None:
    """Why this machine cannot make network namespaces for us, if it cannot."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"needs `{tool}`"
    return None


def ephemeral_above_ours() -> None:
    """In the namespace we are in (one of ours), take the ephemeral ports
    out of the range the peers bind: Serf's outgoing TCP connections (joins,
    push-pull) get ports from 32768..60999 by default, and one of them took
    the listening port of an agent started a moment later. The setting is
    per namespace; the host's is never touched."""
    with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as f:
        f.write(f"{EPHEMERAL[0]} {EPHEMERAL[1]}\n")


def mac(cluster: int, peer: int) -> str:
    """The (locally administered) MAC address of peer `peer` of loss cluster `cluster`."""
    return f"02:cb:00:{cluster:02x}:{peer >> 8:02x}:{peer & 255:02x}"


class Net:
    """The namespaces this run makes, all named <prefix>...; remove_all()
    deletes them (their interfaces and nftables tables go with them)."""

    def __init__(self):
        self.prefix = f"rcb{os.getpid()}{random.randrange(36**2):02x}"
        self.names: list[str] = []
        self.batches = 0

    def add(self, names: list[str], lo_up: bool = True) -> None:
        self.names.extend(names)  # before: a failure half-way leaves some to delete
        run_cmd(["ip", "-batch", "-"], "".join(f"netns add {n}\n" for n in names))
        for n in names if lo_up else []:
            run_cmd(["ip", "-n", n, "link", "set", "lo", "up"])

    def loopback(self) -> str:
        name = f"{self.prefix}lo"
        self.add([name])
        with in_netns(name):
            ephemeral_above_ours()
        return name

    def loss_topology(self, clusters: int, n: int, pct: int, workdir: Path) -> list[list[tuple[str, str]]]:
        """`clusters` clusters of n peer namespaces, each cluster on a bridge
        of its own (all bridges in one more namespace), with the drop rule.
        Returns, per cluster, (namespace, address) of each peer."""
        if clusters > 250:
            raise RunFailed("too many clusters for one loss batch")
        self.batches += 1
        b = self.batches
        bridge_ns = f"{self.prefix}b{b}"
        layout = [
            [(f"{self.prefix}b{b}c{k}p{i}", f"10.233.{k + 1}.{i}") for i in range(1, n + 1)] for k in range(clusters)
        ]
        self.add([bridge_ns] + [ns for cl in layout for ns, _ in cl], lo_up=False)
        links = []
        bridge_cmds = []
        for k, cl in enumerate(layout):
            bridge_cmds += [f"link add br{k} type bridge\n", f"link set br{k} up\n"]
            for i, (ns, _) in enumerate(cl, 1):
                links.append(
                    f"link add c{k}p{i} netns {bridge_ns} type veth"
                    f" peer name eth0 address {mac(k, i)} netns {ns}\n"
                )
                bridge_cmds += [f"link set c{k}p{i} master br{k}\n", f"link set c{k}p{i} up\n"]
        run_cmd(["ip", "-batch", "-"], "".join(links))
        run_cmd(["ip", "-n", bridge_ns, "-batch", "-"], "".join(bridge_cmds))
        rules = workdir / f"loss{pct}.nft"
        rules.write_text(
            "table inet rcbench {\n"
            "\tchain input {\n"
            "\t\ttype filter hook input priority 0; policy accept;\n"
            f"\t\tnumgen random mod 100 < {pct} counter drop\n"
            "\t\tmeta l4proto udp counter accept\n"
            "\t}\n"
            "\tchain output {\n"
            "\t\ttype filter hook output priority 0; policy accept;\n"
            "\t\tmeta l4proto udp counter accept\n"
            "\t}\n"
            "}\n"
        )
        # Permanent neighbour entries instead of ARP: the kernel's ARP table
        # is shared by every namespace, and its default gc_thresh3 (1024
        # entries in all) is less than 16 peers x 15 neighbours x 5 runs x 4
        # systems; past it, sends fail with ENOBUFS (SndbufErrors) until
        # entries age out, tens of seconds later. Permanent entries are exempt
        # from that limit, leave the table to everybody else's tests, and take
        # ARP's round trips out of the figures.
        for k, cl in enumerate(layout):
            neigh = [f"neigh add {addr} lladdr {mac(k, i)} dev eth0 nud permanent\n" for i, (_, addr) in enumerate(cl, 1)]
            for i, (ns, addr) in enumerate(cl, 1):
                run_cmd(
                    ["ip", "-n", ns, "-batch", "-"],
                    f"link set lo up\naddr add {addr}/24 dev eth0\nlink set eth0 up\n"
                    + "".join(line for j, line in enumerate(neigh, 1) if j != i),
                )
                with in_netns(ns):
                    run_cmd(["nft", "-f", str(rules)])
                    ephemeral_above_ours()
        return layout

    def remove(self, names: list[str]) -> list[str]:
        errors = []
        gone = set(names)
        try:
            run_cmd(["ip", "-force", "-batch", "-"], "".join(f"netns del {n}\n" for n in names))
        except (RunFailed, subprocess.TimeoutExpired) as e:
            errors.append(str(e))
        self.names = [n for n in self.names if n not in gone]
        return errors

    def remove_all(self) -> list[str]:
        errors = self.remove(list(self.names)) if self.names else []
        left = self.leftovers()
        if left:
            errors.append(f"namespaces left behind: {', '.join(left)}")
        return errors

    def leftovers(self) -> list[str]:
        try:
            text = run_cmd(["ip", "netns", "list"])
        except (RunFailed, subprocess.TimeoutExpired):
            return []
        names = [l.split()[0] for l in text.splitlines() if l.strip()]
        return [n for n in names if n.startswith(self.prefix)]


def nft_json(argv: list[str]) -> list[dict]:
    return json.loads(run_cmd(["nft", "-j"] + argv)).get("nftables", [])


SERF_TX_RULES = """table inet rcbench_tx {
\tset tx { type inet_service; flags dynamic; counter; size 65535; }
\tchain output {
\t\ttype filter hook output priority 0; policy accept;
\t\tmeta l4proto udp add @tx { udp sport }
\t}
}
"""


def serf_tx_counts() -> dict[int, int]:
    """UDP datagrams sent per source port, from the set SERF_TX_RULES fills
    (in the namespace we are in)."""
    counts = {}
    for item in nft_json(["list", "set", "inet", "rcbench_tx", "tx"]):
        for elem in item.get("set", {}).get("elem", []):
            e = elem.get("elem", {})
            counts[int(e["val"])] = int(e.get("counter", {}).get("packets", 0))
    return counts


def output_counter(ns: str) -> int | None:
    """Datagrams counted by the output chain of the loss ruleset in `ns`."""
    with in_netns(ns):
        items = nft_json(["list", "chain", "inet", "rcbench", "output"])
    for item in items:
        for stmt in item.get("rule", {}).get("expr", []):
            if "counter" in stmt:
                return int(stmt["counter"]["packets"])
    return None


# ---------------------------------------------------------------------------
# Systems: how to start a peer, how to read its output
# ---------------------------------------------------------------------------


class System:
    name = ""
    self_counting = True  # logs `sent N datagrams` at READY
    ports_per_peer = 1
    first_up_first = False  # peer 1 must be up before the others start

    def __init__(self, path: str):
        self.path = path

    def argv(self, cl: "Cluster", i: int) -> list[str]:
        raise NotImplementedError

    def parse(self, peer: "Peer", stream: str, text: str) -> bool:
        """Takes one line of the peer's output; True when it says READY."""
        if stream == "out":
            return text == "READY"
        if BOUND in text:
            peer.bound = True
        m = EXCHANGED.search(text)
        if m:
            peer.exchanged = max(peer.exchanged, int(m.group(1)))
        m = SENT.search(text)
        if m and peer.sent is None:
            peer.sent = int(m.group(1))
        return False

    def up(self, peer: "Peer") -> bool:
        return peer.bound

    def warm(self, peer: "Peer", n: int) -> bool:
        """Peer (one of the first n-1) has exchanged with the other n-2."""
        return peer.bound and peer.exchanged >= n - 1

    def poke(self, peers: list["Peer"], n: int) -> None:
        pass

    def missing(self, peer: "Peer") -> str:
        """What the peer still waits for, for a failure message ('' if unknown)."""
        return ""

    def check_exit(self, peer: "Peer") -> str | None:
        if peer.exit_status not in TERM_OK:
            return f"{peer.label} exited with {peer.exit_status} after SIGTERM (expected 143)"
        return None

    def check_stdout(self, peer: "Peer") -> str | None:
        if list(peer.stdout) != ["READY"]:
            return f"{peer.label} stdout was {list(peer.stdout)!r} (expected exactly ['READY'])"
        return None


class Rollcall(System):
    name = "rollcall"

    def __init__(self, path: str, name: str = "rollcall"):
        super().__init__(path)
        self.name = name

    def argv(self, cl, i):
        a = [self.path, "--hosts", str(cl.hosts), "--name", cl.entries[i - 1], "--timeout", "30m"]
        return a + (["--interval", cl.interval] if cl.interval else [])

    def parse(self, peer, stream, text):
        m = PROGRESS.search(text) if stream == "err" else None
        if m:
            peer.missing = int(m.group(1))
        return super().parse(peer, stream, text)

    def warm(self, peer, n):
        # Each says so per pair in a small cluster; in a large one (those
        # lines are at debug level) its progress report, asked for with
        # SIGUSR1, names only the peer not started yet.
        return peer.bound and (peer.exchanged >= n - 1 or peer.missing == 1)

    def poke(self, peers, n):
        for p in peers:
            if p.bound and not self.warm(p, n) and p.proc.poll() is None:
                os.kill(p.proc.pid, signal.SIGUSR1)


class Classic(System):
    name = "classic"
    reply_first = False

    def argv(self, cl, i):
        a = [self.path, "-h", str(cl.hosts), "-n", cl.entries[i - 1], "-t", "30m"]
        return a + (["--reply-first"] if self.reply_first else [])


class Floor(Classic):
    name = "floor"
    reply_first = True


class Serf(System):
    name = "serf"
    self_counting = False
    ports_per_peer = 2
    first_up_first = True

    def argv(self, cl, i):
        addr, port = cl.entries[i - 1].rsplit(":", 1)
        a = [
            self.path,
            "agent",
            f"-node=n{i}",
            f"-bind={addr}:{port}",
            f"-rpc-addr=127.0.0.1:{cl.rpc_ports[i - 1]}",
            "-log-level=info",
        ]
        if i > 1:
            # -retry-join, not -join: a join that fails (a SYN lost under
            # loss, agent 1 slow to accept) is retried every second instead
            # of ending the agent.
            a += [f"-retry-join={cl.entries[0]}", "-retry-interval=1s"]
        return a

    def parse(self, peer, stream, text):
        if SERF_RUNNING in text:
            peer.bound = True
        m = SERF_EVENT.search(text)
        if m:
            kind, node = m.groups()
            peer.last_event[node] = kind
            if kind == "Join":
                peer.alive.add(node)
            elif kind != "Update":
                peer.alive.discard(node)
            return len(peer.alive) >= peer.cluster.n
        return False

    def missing(self, peer):
        gone = [f"n{i}" for i in range(1, peer.cluster.n + 1) if f"n{i}" not in peer.alive]
        if not gone:
            return ""
        said = ", ".join(f"{g} ({peer.last_event.get(g, 'never heard of')})" for g in gone[:5])
        return f"\n      {peer.label}: not alive in its view: {said}"

    def warm(self, peer, n):
        return len(peer.alive) >= n - 1

    def check_exit(self, peer):
        return None  # Serf's exit status on SIGTERM is not ours to judge

    def check_stdout(self, peer):
        return None  # its stdout is its log


# ---------------------------------------------------------------------------
# Peers, clusters, and the one selector that reads them all
# ---------------------------------------------------------------------------


class Peer:
    def __init__(self, cluster: "Cluster", index: int, proc: subprocess.Popen):
        self.cluster = cluster
        self.index = index
        self.name = cluster.entries[index - 1]
        self.proc = proc
        self.partial = {"out": b"", "err": b""}
        self.stdout: deque[str] = deque(maxlen=20)
        self.stderr: deque[str] = deque(maxlen=40)
        self.ready_at: float | None = None  # time.perf_counter() when READY was read
        self.ready_cpu_ns: int | None = None
        self.bound = False
        self.exchanged = 1  # k of the last `exchanged with NAME (k/N)`; this peer counts
        self.missing: int | None = None  # from rollcall's last progress report
        self.sent: int | None = None  # datagrams sent until READY
        self.alive: set[str] = set()  # Serf: members seen alive
        self.last_event: dict[str, str] = {}  # Serf: the last event about each member
        self.open_pipes = 2
        self.exit_status: int | None = None
        self.hwm: int | None = None

    @property
    def label(self) -> str:
        return f"{self.cluster.system.name} peer{self.index} ({self.name})"

    def line(self, stream: str, text: str, now: float) -> None:
        (self.stdout if stream == "out" else self.stderr).append(text)
        if self.cluster.system.parse(self, stream, text) and self.ready_at is None:
            self.ready_at = now
            self.ready_cpu_ns = sched_ns(self.proc.pid)

    def tail(self, n: int = 5) -> str:
        lines = list(self.stderr)[-n:] or list(self.stdout)[-n:] or ["(no output)"]
        return "\n".join(f"      {self.label}: {line}" for line in lines)


class Pump:
    """Every peer's stdout and stderr, read through one selector, line by
    line, as they arrive."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()

    def add(self, peer: Peer) -> None:
        for stream, pipe in (("out", peer.proc.stdout), ("err", peer.proc.stderr)):
            os.set_blocking(pipe.fileno(), False)
            self.sel.register(pipe, selectors.EVENT_READ, (peer, stream))

    def forget(self, peer: Peer) -> None:
        for key in list(self.sel.get_map().values()):
            if key.data[0] is peer:
                self.sel.unregister(key.fileobj)
                key.fileobj.close()

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

    def close(self) -> None:
        for key in list(self.sel.get_map().values()):
            self.sel.unregister(key.fileobj)
            key.fileobj.close()
        self.sel.close()


CLUSTER_IDS = itertools.count(1)


class Cluster:
    """N peers of one system from one hosts file; peer i runs in namespace
    netns[i-1] (None: ours)."""

    def __init__(
        self,
        system: System,
        n: int,
        pump: Pump,
        workdir: Path,
        addrs: list[str],
        ports: list[int],
        netns: list[str | None],
        interval: str | None = None,
    ):
        self.system = system
        self.n = n
        self.pump = pump
        self.entries = [f"{a}:{p}" for a, p in zip(addrs, ports[:n])]
        self.rpc_ports = ports[n:]
        self.netns = netns
        self.interval = interval
        self.hosts = workdir / f"hosts-{system.name}-{next(CLUSTER_IDS)}"
        self.hosts.write_text("".join(e + "\n" for e in self.entries))
        self.peers: list[Peer] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLCALL_")}
        self.t0: float | None = None
        self.result: dict | None = None
        self.done = False  # every peer READY (the batches)
        self.failed: str | None = None

    def spawn(self, index: int) -> Peer:
        with in_netns(self.netns[index - 1]):
            proc = subprocess.Popen(
                self.system.argv(self, index),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.env,
                start_new_session=True,  # a process group of its own, killed as one
            )
        peer = Peer(self, index, proc)
        self.peers.append(peer)
        self.pump.add(peer)
        return peer

    def spawn_all(self, up_wait: float) -> None:
        """Peers 1..N back to back (Serf: agent 1 up first); t0 just before
        the last spawn."""
        first = 1
        if self.system.first_up_first and self.n > 1:
            p = self.spawn(1)
            wait_until(self.pump, lambda: self.system.up(p), up_wait, [self], "agent 1 to be up")
            first = 2
        for i in range(first, self.n):
            self.spawn(i)
        self.t0 = time.perf_counter()
        self.spawn(self.n)

    def dead(self) -> Peer | None:
        for p in self.peers:
            if p.open_pipes == 0 or p.proc.poll() is not None:
                return p
        return None

    def all_ready(self) -> bool:
        return len(self.peers) == self.n and all(p.ready_at is not None for p in self.peers)

    def ready_count(self) -> int:
        return sum(p.ready_at is not None for p in self.peers)

    def stop(self) -> list[str]:
        """SIGTERM every peer's group, SIGKILL after 3 s, reap, read their
        last lines. Returns notes about peers that did not exit as they should."""
        notes = []
        signalled = []
        for p in self.peers:
            if p.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.proc.pid, signal.SIGTERM)
                signalled.append(p)
            else:
                p.exit_status = p.proc.returncode
        deadline = time.monotonic() + 3
        for p in signalled:
            try:
                p.exit_status = p.proc.wait(timeout=max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                notes.append(f"{p.label} still running 3s after SIGTERM (killed)")
                # Its group, whatever it started too; the leader is not
                # reaped yet, so the group id cannot have been reused.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.proc.pid, signal.SIGKILL)
                p.exit_status = p.proc.wait()
                continue
            note = self.system.check_exit(p)
            if note:
                notes.append(note)
        deadline = time.monotonic() + 1
        mine = [p for p in self.peers if p.open_pipes > 0]
        while any(p.open_pipes > 0 for p in mine) and time.monotonic() < deadline:
            self.pump.pump(0.1)
        for p in mine:
            self.pump.forget(p)
        return notes


def wait_until(
    pump: Pump, done, wait: float, clusters: list[Cluster], what: str, poke=None, stuck=None
) -> None:
    """Pump until done() is true; RunFailed if a peer exits or `wait` runs
    out. `poke`, if given, is called every 0.1 s meanwhile; `stuck(peer)`
    says which peers to show when the time runs out (default: not READY)."""
    deadline = time.monotonic() + wait
    while not done():
        for cl in clusters:
            p = cl.dead()
            if p is not None:
                pump.pump(0)
                try:
                    rc = p.proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    rc = "?"
                raise RunFailed(f"{p.label} exited with code {rc} while waiting for {what}\n{p.tail()}")
        left = deadline - time.monotonic()
        if left <= 0:
            ready = sum(cl.ready_count() for cl in clusters)
            total = sum(cl.n for cl in clusters)
            late = [p for cl in clusters for p in cl.peers if (stuck(p) if stuck else p.ready_at is None)]
            late = late or clusters[0].peers
            serf = [len(p.alive) for cl in clusters if isinstance(cl.system, Serf) for p in cl.peers]
            raise RunFailed(
                f"timed out after {wait:g}s waiting for {what} ({ready} of {total} READY"
                + (f"; {len(late)} peers still waiting" if stuck else "")
                + (f"; members seen alive: min {min(serf)}, median {statistics.median(serf):g}" if serf else "")
                + ")\n"
                + "\n".join(p.tail(2) + p.cluster.system.missing(p) for p in late[:3])
            )
        if poke is not None:
            poke()
        pump.pump(min(left, 0.5 if poke is None else 0.1))


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------


class Ports:
    """Ports for each run, contiguous, cycling through a window of the
    range given; the first one at a random offset."""

    def __init__(self, base: int):
        self.lo = base + 1
        self.hi = min(base + PORT_WINDOW, 65535)  # inclusive
        self.next = self.lo + random.randrange(max(self.hi - self.lo - 1024, 1))

    def take(self, k: int) -> list[int]:
        if k > self.hi - self.lo + 1:
            raise RunFailed(f"{k} ports do not fit in {self.lo}..{self.hi}")
        if self.next + k - 1 > self.hi:
            self.next = self.lo
        ports = list(range(self.next, self.next + k))
        self.next += k
        return ports


class Env:
    """Where loopback runs happen: `ns` (a namespace of ours) or the host."""

    def __init__(self, args, ports: Ports, workdir: Path, ns: str | None):
        self.args = args
        self.ports = ports
        self.workdir = workdir
        self.ns = ns
        self.scope = "run netns" if ns else "host-wide"

    def wait_for(self, n: int, system: System | None = None) -> float:
        """The bound on a wait for n peers of `system`."""
        w = self.args.wait + 0.25 * n
        return max(w, self.args.serf_wait) if isinstance(system, Serf) else w

    def cluster(self, system: System, n: int, pump: Pump) -> Cluster:
        ports = self.ports.take(n * system.ports_per_peer)
        return Cluster(system, n, pump, self.workdir, ["127.0.0.1"] * n, ports, [None] * n)


def collect(cl: Cluster, snmp0: dict, snmp_path: str | list[str], serf_counts) -> dict:
    """What can be read at once after the last READY."""
    t_last = max(p.ready_at for p in cl.peers)
    snmp1 = {}
    paths = snmp_path if isinstance(snmp_path, list) else [snmp_path]
    for path in paths:
        for k, v in udp_snmp(path).items():
            snmp1[k] = snmp1.get(k, 0) + v
    r = {
        "latency_ms": (t_last - cl.t0) * 1000,
        "rcvbuf_errors": snmp1.get("Udp.RcvbufErrors", 0) - snmp0.get("Udp.RcvbufErrors", 0) if snmp1 else None,
        "udp_out_total": snmp1.get("Udp.OutDatagrams", 0) - snmp0.get("Udp.OutDatagrams", 0) if snmp1 else None,
        "tcp_out_total": snmp1.get("Tcp.OutSegs", 0) - snmp0.get("Tcp.OutSegs", 0) if snmp1 else None,
        "kernel_sent": None,
    }
    if not cl.system.self_counting and serf_counts is not None:
        try:
            r["kernel_sent"] = serf_counts()
        except (RunFailed, subprocess.TimeoutExpired, ValueError, KeyError) as e:
            r["note"] = f"datagram counters unreadable: {e}"
    for p in cl.peers:
        p.hwm = vmhwm_kib(p.proc.pid)
    r["vmhwm"] = [p.hwm for p in cl.peers if p.hwm is not None]
    r["ready_cpu_ms"] = [p.ready_cpu_ns / 1e6 for p in cl.peers if p.ready_cpu_ns]
    return r


def finish(cl: Cluster, r: dict, pump: Pump, notes: list[str], wait: float = 5) -> dict:
    """The `sent N datagrams` lines, which may come a moment after READY."""
    if "note" in r:
        notes.append(f"{cl.system.name} N={cl.n}: {r.pop('note')}")
    if cl.system.self_counting:
        try:
            wait_until(pump, lambda: all(p.sent is not None for p in cl.peers), wait, [cl], "the READY log lines")
        except RunFailed:
            missing = [p.label for p in cl.peers if p.sent is None]
            notes.append(f"{cl.system.name} N={cl.n}: no `sent N datagrams` log line from {', '.join(missing[:5])}")
        r["datagrams"] = [p.sent for p in cl.peers if p.sent is not None]
        r["datagrams_basis"] = "own READY (log)"
    else:
        ks = r.get("kernel_sent")
        r["datagrams"] = list(ks) if ks else []
        r["datagrams_basis"] = "last READY (kernel)" if ks else "-"
    return r


def stop_and_check(cl: Cluster, notes: list[str]) -> None:
    notes.extend(cl.stop())
    for p in cl.peers:
        note = cl.system.check_stdout(p)
        if note:
            notes.append(note)


def serf_counter(env: Env, cl: Cluster):
    """A function reading the Serf cluster's per-agent datagram counts, or
    None where they cannot be counted (no namespace of ours)."""
    if env.ns is None:
        return None
    ports = [int(e.rsplit(":", 1)[1]) for e in cl.entries]

    def read():
        counts = serf_tx_counts()
        return [counts.get(p, 0) for p in ports]

    return read


@contextlib.contextmanager
def serf_counting(env: Env, system: System):
    """The per-port counters for Serf, in our loopback namespace, for one run."""
    if system.self_counting or env.ns is None:
        yield
        return
    with contextlib.suppress(RunFailed):
        run_cmd(["nft", "delete", "table", "inet", "rcbench_tx"])
    run_cmd(["nft", "-f", "-"], SERF_TX_RULES)
    try:
        yield
    finally:
        with contextlib.suppress(RunFailed, subprocess.TimeoutExpired):
            run_cmd(["nft", "delete", "table", "inet", "rcbench_tx"])


def start_run(env: Env, system: System, n: int, notes: list[str]) -> dict:
    pump = Pump()
    cl = env.cluster(system, n, pump)
    try:
        with serf_counting(env, system):
            snmp0 = udp_snmp()
            cl.spawn_all(env.wait_for(n, system))
            wait_until(pump, cl.all_ready, env.wait_for(n, system), [cl], "READY")
            r = collect(cl, snmp0, "/proc/self/net/snmp", serf_counter(env, cl))
            finish(cl, r, pump, notes)
    finally:
        stop_and_check(cl, notes)
        pump.close()
    return r


def join_run(env: Env, system: System, n: int, notes: list[str]) -> dict:
    pump = Pump()
    cl = env.cluster(system, n, pump)
    try:
        with serf_counting(env, system):
            snmp0 = udp_snmp()
            t_warm = time.perf_counter()
            if system.first_up_first and n > 1:
                p1 = cl.spawn(1)
                wait_until(pump, lambda: system.up(p1), env.wait_for(n, system), [cl], "agent 1 to be up")
            for i in range(len(cl.peers) + 1, n):
                cl.spawn(i)
            first = list(cl.peers)
            wait_until(
                pump,
                lambda: all(system.warm(p, n) for p in first),
                env.wait_for(n, system),
                [cl],
                f"the first {n - 1} peers to exchange with one another",
                poke=(lambda: system.poke(first, n)) if isinstance(system, Rollcall) else None,
                stuck=lambda p: not system.warm(p, n),
            )
            warmup = time.perf_counter() - t_warm
            early = [p.label for p in first if p.ready_at is not None]
            if early:
                raise RunFailed(f"READY before the last peer started: {', '.join(early[:3])}")
            cl.t0 = time.perf_counter()
            cl.spawn(n)
            wait_until(pump, cl.all_ready, env.wait_for(n, system), [cl], "READY")
            r = collect(cl, snmp0, "/proc/self/net/snmp", serf_counter(env, cl))
            r["warmup_ms"] = warmup * 1000
            finish(cl, r, pump, notes)
    finally:
        stop_and_check(cl, notes)
        pump.close()
    return r


def idle_batch(env: Env, jobs: list[tuple[System, int]], seconds: float, notes: list[str]) -> list[dict | str]:
    """One READY cluster per (system, size) in `jobs`, all at once, then one
    window of `seconds` over which each peer's CPU time is read. Idle peers
    barely compete for the CPU, and CPU time is counted per process, so
    running them side by side changes nothing but the wall time."""
    pump = Pump()
    clusters = [env.cluster(system, n, pump) for system, n in jobs]
    out: list[dict | str] = []
    try:
        for cl in clusters:
            try:
                cl.spawn_all(env.wait_for(cl.n, cl.system))
            except RunFailed as e:
                cl.failed = str(e)
        wait_clusters(pump, clusters, max(env.wait_for(n, system) for system, n in jobs))
        live = [cl for cl in clusters if cl.done]
        pids = {cl: [p.proc.pid for p in cl.peers] for cl in live}
        t_start = time.monotonic()
        ticks0 = {cl: [cpu_ticks(pid) for pid in pids[cl]] for cl in live}
        ns0 = {cl: [sched_ns(pid) for pid in pids[cl]] for cl in live}
        end = t_start + seconds
        while (left := end - time.monotonic()) > 0:
            pump.pump(min(left, 0.5))  # keep reading their output meanwhile
            for cl in live:
                p = cl.dead()
                if p is not None and cl.failed is None:
                    cl.failed = f"{p.label} exited with {p.proc.poll()} during the window\n{p.tail()}"
        ticks1 = {cl: [cpu_ticks(pid) if cl.failed is None else 0 for pid in pids[cl]] for cl in live}
        ns1 = {cl: [sched_ns(pid) for pid in pids[cl]] for cl in live}
        window = time.monotonic() - t_start
        for cl in clusters:
            if cl.failed is not None:
                out.append(cl.failed)
                continue
            hwm = [h for h in (vmhwm_kib(pid) for pid in pids[cl]) if h is not None]
            out.append(
                {
                    "window": window,
                    "pct": [(b - a) / CLK_TCK / window * 100 for a, b in zip(ticks0[cl], ticks1[cl])],
                    "sched_pct": [(b - a) / 1e9 / window * 100 for a, b in zip(ns0[cl], ns1[cl])],
                    "vmhwm": hwm,
                }
            )
    finally:
        for cl in clusters:
            stop_and_check(cl, notes)
        pump.close()
    return out


def wait_clusters(pump: Pump, clusters: list[Cluster], wait: float, on_ready=None) -> None:
    """Pump until every cluster is READY or has failed (a peer exited, or
    `wait` ran out: cl.failed says so); on_ready(cl) as each gets READY."""
    deadline = time.monotonic() + wait
    while True:
        pending = [cl for cl in clusters if not cl.done and cl.failed is None]
        for cl in pending:
            p = cl.dead()
            if p is not None:
                cl.failed = f"{p.label} exited with {p.proc.poll()}\n{p.tail()}"
            elif cl.all_ready():
                cl.done = True
                if on_ready is not None:
                    on_ready(cl)
        pending = [cl for cl in clusters if not cl.done and cl.failed is None]
        if not pending:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            for cl in pending:
                cl.failed = f"timed out after {wait:g}s ({cl.ready_count()} of {cl.n} READY)"
            return
        pump.pump(min(left, 0.5))


def loss_batch(
    net: Net, systems: list[System], n: int, pct: int, runs: int, ports: Ports, workdir: Path, wait: float, notes: list[str]
) -> list[tuple[System, int, dict | str]]:
    """Every run of every system at once, each cluster in namespaces of its
    own; returns (system, run, result or failure) per cluster.

    Clusters are spawned one after the other, and the first ones run their
    exchange while the later ones start beside them: so the spawn order
    goes run by run, each run's systems rotated by one, and every system
    takes every place in it in turn (spawned system by system, the first
    system's clusters measured twice as slow as the same binary's as the
    second system)."""
    k = len(systems)
    jobs = [(systems[(run - 1 + i) % k], run) for run in range(1, runs + 1) for i in range(k)]
    layout = net.loss_topology(len(jobs), n, pct, workdir)
    made = [ns for cl in layout for ns, _ in cl] + [f"{net.prefix}b{net.batches}"]
    pump = Pump()
    clusters: list[Cluster] = []
    out: list[tuple[System, int, dict | str]] = []
    try:
        for (system, _run), lay in zip(jobs, layout):
            # Each peer has a namespace (and an address) of its own: the same
            # ports serve every cluster.
            port = ports.take(system.ports_per_peer)
            p = [port[0]] * n + ([port[1]] * n if system.ports_per_peer > 1 else [])
            cl = Cluster(
                system,
                n,
                pump,
                workdir,
                [addr for _, addr in lay],
                p,
                [ns for ns, _ in lay],
                interval="1s" if isinstance(system, Rollcall) else None,
            )
            clusters.append(cl)
        for cl in clusters:
            try:
                cl.spawn_all(wait)
            except RunFailed as e:
                cl.failed = str(e)

        def on_ready(cl: Cluster) -> None:
            if cl.system.self_counting:
                counter = None
            else:
                counter = lambda: [output_counter(ns) or 0 for ns in cl.netns]  # noqa: E731
            cl.result = collect(cl, {}, [f"/proc/{q.proc.pid}/net/snmp" for q in cl.peers], counter)

        wait_clusters(pump, clusters, wait, on_ready)
        for cl in clusters:
            if cl.result is not None:
                finish(cl, cl.result, pump, notes)
    finally:
        for cl in clusters:
            stop_and_check(cl, notes)
        pump.close()
        for e in net.remove(made):
            notes.append(f"netns teardown: {e}")
    for (system, run), cl in zip(jobs, clusters):
        out.append((system, run, cl.result if cl.result is not None else (cl.failed or "failed")))
    return out


# The simulator's memory per pair of nodes (each node's record of each
# other, its deadlines and queues), measured at 2 000 nodes: 206 bytes.
SIM_BYTES_PER_PAIR = 220
# Above this many nodes the run started together is left out: its n² first
# heartbeats are all in flight at once.
SIM_TOGETHER_MAX = 4000


def mem_available() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def sim_lines(cargo: str, timeout: float, peers: int) -> tuple[list[dict], str | None]:
    """Rows from the simulator's scale figures (src/machine/scale.rs) at
    `peers` nodes, one seed each, 0% and 20% loss (and started together,
    up to SIM_TOGETHER_MAX), and
    what went wrong if anything did (no rows: a reason to skip)."""
    need = SIM_BYTES_PER_PAIR * peers * peers
    have = mem_available()
    if have is not None and need > have:
        return [], f"{peers} nodes need about {need / 1e9:.1f} GB, {have / 1e9:.1f} GB available"
    argv = [cargo, "test", "--release", "--lib", "machine::scale::figures", "--", "--ignored", "--nocapture"]
    runs = "spread,loss" if peers > SIM_TOGETHER_MAX else "spread,loss,together"
    env = dict(os.environ, ROLLCALL_SCALE_PEERS=str(peers), ROLLCALL_SCALE_SEEDS="1", ROLLCALL_SCALE_RUNS=runs)
    try:
        proc = subprocess.Popen(
            argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True, env=env,
        )
    except OSError as e:
        return [], f"cannot run {cargo}: {e}"
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return [], f"`{' '.join(argv)}` did not finish in {timeout:g}s"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    rows = []
    for line in out.splitlines():
        m = SIM_LINE.match(line.strip())
        if m:
            rows.append(
                {
                    "peers": int(m.group(1)),
                    "loss_pct": m.group(2),
                    "ready_ms": float(m.group(3)),
                    "datagrams": int(m.group(4)),
                    "minimum": int(m.group(5)),
                    "spread_ms": float(spread.group(1)) if (spread := SIM_SPREAD.search(line)) else 1000.0,
                }
            )
    if rows:
        return rows, None if proc.returncode == 0 else f"cargo test failed ({proc.returncode}) after {len(rows)} SIM lines"
    if proc.returncode != 0:
        tail = " | ".join(out.strip().splitlines()[-3:])
        return [], f"cargo test failed ({proc.returncode}): {tail[:300]}"
    if re.search(r"running 0 tests", out):
        return [], "no test machine::scale::figures in this tree"
    return [], "the test printed no `SIM peers=...` lines"


# ---------------------------------------------------------------------------
# Figures: rows, summaries, table, chart
# ---------------------------------------------------------------------------


def fmt_num(x, digits: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, int) or float(x).is_integer():
        return f"{x:g}" if abs(x) < 1e15 else str(x)
    return f"{x:.{digits}f}"


def minimum(n: int) -> float:
    return 1.5 * (n - 1)


def run_row(system: str, scenario: str, n: int, run: int, r: dict | str, loss: int | None = None) -> dict:
    row = {"system": system, "scenario": scenario, "peers": n, "loss_pct": "" if loss is None else loss, "run": run}
    if isinstance(r, str):
        row["status"] = f"failed: {r.splitlines()[0]}"
        return row
    row["status"] = "ok"
    if "latency_ms" in r:
        row["latency_ms"] = f"{r['latency_ms']:.3f}"
    if "warmup_ms" in r:
        row["warmup_ms"] = f"{r['warmup_ms']:.1f}"
    sent = r.get("datagrams") or []
    if sent:
        row.update(
            datagrams_median=fmt_num(statistics.median(sent)),
            datagrams_min=min(sent),
            datagrams_max=max(sent),
            datagrams_total=sum(sent),
            datagrams_ratio=f"{statistics.median(sent) / minimum(n):.2f}",
        )
    if "datagrams" in r:
        row["datagrams_minimum"] = fmt_num(minimum(n))
        row["datagrams_basis"] = r.get("datagrams_basis", "")
    for k in ("udp_out_total", "tcp_out_total", "rcvbuf_errors"):
        if r.get(k) is not None:
            row[k] = r[k]
    if "rcvbuf_scope" in r:
        row["rcvbuf_scope"] = r["rcvbuf_scope"]
    cpu = r.get("ready_cpu_ms") or []
    if cpu:
        row["ready_cpu_ms_median"] = f"{statistics.median(cpu):.2f}"
        row["ready_cpu_ms_max"] = f"{max(cpu):.2f}"
    hwm = r.get("vmhwm") or []
    if hwm:
        row["vmhwm_kib_median"] = fmt_num(statistics.median(hwm))
        row["vmhwm_kib_max"] = max(hwm)
    if "window" in r:
        row.update(
            cpu_window_s=f"{r['window']:.2f}",
            cpu_pct_median=f"{statistics.median(r['pct']):.4f}",
            cpu_pct_max=f"{max(r['pct']):.4f}",
            cpu_sched_pct_median=f"{statistics.median(r['sched_pct']):.4f}",
            cpu_sched_pct_max=f"{max(r['sched_pct']):.4f}",
            cpu_sched_pct_sum=f"{sum(r['sched_pct']):.4f}",
        )
    return row


class Results:
    def __init__(self):
        self.rows: list[dict] = []
        # (system, scenario, peers, loss) -> list of result dicts or failure strings
        self.groups: dict[tuple, list] = {}
        self.failures = 0

    def add(self, system: str, scenario: str, n: int, run: int, r, loss: int | None = None) -> None:
        self.rows.append(run_row(system, scenario, n, run, r, loss))
        self.groups.setdefault((system, scenario, n, loss), []).append(r)
        if isinstance(r, str):
            self.failures += 1

    def ok(self, key) -> list[dict]:
        return [r for r in self.groups.get(key, []) if not isinstance(r, str)]

    def summary(self) -> list[dict]:
        out = []
        for key, rs in self.groups.items():
            system, scenario, n, loss = key
            good = self.ok(key)
            row = {
                "system": system,
                "scenario": scenario,
                "peers": n,
                "loss_pct": "" if loss is None else loss,
                "runs": len(rs),
                "runs_ok": len(good),
            }
            lat = [r["latency_ms"] for r in good if "latency_ms" in r]
            if lat:
                row.update(
                    latency_ms_median=f"{statistics.median(lat):.3f}",
                    latency_ms_min=f"{min(lat):.3f}",
                    latency_ms_max=f"{max(lat):.3f}",
                )
            sent = [d for r in good for d in r.get("datagrams") or []]
            if sent:
                row.update(
                    datagrams_median=fmt_num(statistics.median(sent)),
                    datagrams_max=max(sent),
                    datagrams_minimum=fmt_num(minimum(n)),
                    datagrams_ratio=f"{statistics.median(sent) / minimum(n):.2f}",
                    datagrams_basis=good[0].get("datagrams_basis", ""),
                )
            cpu = [c for r in good for c in r.get("ready_cpu_ms") or []]
            if cpu:
                row.update(ready_cpu_ms_median=f"{statistics.median(cpu):.2f}", ready_cpu_ms_max=f"{max(cpu):.2f}")
            hwm = [h for r in good for h in r.get("vmhwm") or []]
            if hwm:
                row.update(vmhwm_kib_median=fmt_num(statistics.median(hwm)), vmhwm_kib_max=max(hwm))
            drops = [r["rcvbuf_errors"] for r in good if r.get("rcvbuf_errors") is not None]
            if drops:
                row.update(
                    rcvbuf_errors_median=fmt_num(statistics.median(drops)),
                    rcvbuf_errors_max=max(drops),
                    rcvbuf_scope=good[0].get("rcvbuf_scope", ""),
                )
            sp = [p for r in good for p in r.get("sched_pct") or []]
            if sp:
                sums = [sum(r["sched_pct"]) for r in good]
                row.update(
                    cpu_sched_pct_median=f"{statistics.median(sp):.4f}",
                    cpu_sched_pct_max=f"{max(sp):.4f}",
                    cpu_sched_pct_sum_median=f"{statistics.median(sums):.4f}",
                )
            out.append(row)
        return out


def cell_latency(res: Results, key, digits: int = 1) -> str:
    rs = res.groups.get(key)
    if rs is None:
        return "n/a"
    good = res.ok(key)
    lat = [r["latency_ms"] for r in good if "latency_ms" in r]
    if not lat:
        return f"failed ({len(rs)}/{len(rs)})"
    s = f"{fmt_num(statistics.median(lat), digits)} ({fmt_num(min(lat), digits)}–{fmt_num(max(lat), digits)})"
    if len(good) < len(rs):
        s += f" [{len(rs) - len(good)}/{len(rs)} failed]"
    return s


def markdown(res: Results, systems: list[str], sizes: list[int], join_sizes: list[int], loss_cfgs, idle, sim_rows, runs, scope) -> str:
    lines: list[str] = []

    def table(title: str, head: list[str], body: list[list[str]], foot: str | None = None) -> None:
        if not body:
            return
        lines.extend([f"**{title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)])
        lines.extend("| " + " | ".join(r) + " |" for r in body)
        if foot:
            lines.extend(["", foot])
        lines.append("")

    def have(scenario, n, loss=None):
        return any((s, scenario, n, loss) in res.groups for s in systems)

    skipped = "n/a: not run (Serf above --serf-max)." if "serf" in systems else None

    table(
        f"All N started back to back: last start → last READY, ms (median of {runs}, min–max)",
        ["N"] + systems,
        [[str(n)] + [cell_latency(res, (s, "start", n, None)) for s in systems] for n in sizes if have("start", n)],
        skipped,
    )
    table(
        f"One peer joining N−1 already exchanging: its start → last READY, ms (median of {runs}, min–max)",
        ["N"] + systems,
        [[str(n)] + [cell_latency(res, (s, "join", n, None)) for s in systems] for n in join_sizes if have("join", n)],
        skipped,
    )
    table(
        "Random loss, each peer in its own network namespace: last start → last READY, ms (median, min–max);"
        " rollcall at -i 1s, the others at their defaults",
        ["peers, loss"] + systems,
        [
            [f"{n}, {pct}%"] + [cell_latency(res, (s, "loss", n, pct), 0) for s in systems]
            for n, pct in loss_cfgs
            if have("loss", n, pct)
        ],
    )

    def pooled(key, field):
        return [x for r in res.ok(key) for x in r.get(field) or []]

    def sent_cell(key, n):
        sent = pooled(key, "datagrams")
        if not sent:
            return "n/a" if key not in res.groups else "-"
        cell = f"{fmt_num(statistics.median(sent))} / {max(sent)} (×{statistics.median(sent) / minimum(n):.1f})"
        tcp = [
            r["tcp_out_total"] / n
            for r in res.ok(key)
            if key[0] == "serf" and r.get("tcp_out_total") is not None and r.get("rcvbuf_scope") != "host-wide"
        ]
        if tcp:
            cell += f" + {statistics.median(tcp):.0f} TCP segments"
        return cell

    body = []
    for scen, n, loss in [("start", n, None) for n in sizes] + [("loss", n, p) for n, p in loss_cfgs]:
        if have(scen, n, loss):
            label = f"{n}" if scen == "start" else f"{n}, {loss}% loss"
            body.append([label, fmt_num(minimum(n))] + [sent_cell((s, scen, n, loss), n) for s in systems])
    table(
        "Datagrams sent per peer until READY: median / max (× the minimum), all started back to back",
        ["N", "minimum 1.5·(N−1)"] + systems,
        body,
        None
        if "serf" not in systems
        else "Serf: UDP datagrams from the agent's port counted by the kernel until the last agent's READY"
        " (Serf logs no count), plus the TCP segments of its joins and push-pull syncs per agent"
        " (the run's namespace's Tcp OutSegs / N); '-' where there is no namespace of ours to count in"
        " (--host-net, or not root).",
    )

    def med_cell(key, field, fmt):
        xs = pooled(key, field)
        return fmt(statistics.median(xs), max(xs)) if xs else ("n/a" if key not in res.groups else "-")

    table(
        "CPU per peer until READY, ms (median / max), all started back to back",
        ["N"] + systems,
        [
            [str(n)] + [med_cell((s, "start", n, None), "ready_cpu_ms", lambda m, x: f"{m:.1f} / {x:.1f}") for s in systems]
            for n in sizes
            if have("start", n)
        ],
    )
    table(
        "Peak RSS per peer (VmHWM), MiB (median / max), all started back to back",
        ["N"] + systems,
        [
            [str(n)]
            + [med_cell((s, "start", n, None), "vmhwm", lambda m, x: f"{m / 1024:.1f} / {x / 1024:.1f}") for s in systems]
            for n in sizes
            if have("start", n)
        ],
    )

    def drops_cell(key):
        d = [r["rcvbuf_errors"] for r in res.ok(key) if r.get("rcvbuf_errors") is not None]
        return f"{fmt_num(statistics.median(d))} (max {max(d)})" if d else ("n/a" if key not in res.groups else "-")

    table(
        f"Receive-buffer drops (UdpRcvbufErrors, {scope}) per run: median (max), all started back to back",
        ["N"] + systems,
        [[str(n)] + [drops_cell((s, "start", n, None)) for s in systems] for n in sizes if have("start", n)],
    )
    if idle:
        body = []
        for n, per_peer in idle:
            row = [f"{n} peers, " + ("per peer" if per_peer else "whole cluster")]
            for s in systems:
                rs = res.ok((s, "idle", n, None))
                if not rs:
                    row.append("n/a" if (s, "idle", n, None) not in res.groups else "failed")
                elif per_peer:
                    sp = [p for r in rs for p in r["sched_pct"]]
                    row.append(f"{statistics.median(sp):.4f} (max {max(sp):.4f})")
                else:
                    row.append(f"{statistics.median([sum(r['sched_pct']) for r in rs]):.3f}")
            body.append(row)
        table(
            "Idle CPU once READY at the default interval, % of one core (schedstat)",
            ["cluster"] + systems,
            body,
            "Serf: its own defaults (gossip every 200 ms, a probe every second)." if "serf" in systems else None,
        )
    if sim_rows:
        table(
            "Simulator (machine::scale::figures)",
            ["peers", "started within", "loss %", "ready ms", "datagrams", "minimum", "× minimum"],
            [
                [
                    str(r["peers"]),
                    f"{r['spread_ms'] / 1000:g} s" if r["spread_ms"] else "the same instant",
                    r["loss_pct"],
                    fmt_num(r["ready_ms"], 2),
                    str(r["datagrams"]),
                    str(r["minimum"]),
                    f"{r['datagrams'] / r['minimum']:.2f}" if r["minimum"] else "-",
                ]
                for r in sim_rows
            ],
        )
    return "\n".join(lines)


def ensure_matplotlib() -> str | None:
    """Make matplotlib importable, pip-installing it when missing; a reason if not."""
    if importlib.util.find_spec("matplotlib") is not None:
        return None
    say("bench: matplotlib missing: python3 -m pip install --quiet matplotlib")
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"],
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
    except (subprocess.SubprocessError, OSError) as e:
        return f"matplotlib not available (pip: {e})"
    if out.returncode != 0:
        said = [l.strip() for l in (out.stderr or out.stdout).splitlines() if l.strip()]
        return f"matplotlib not available (pip failed: {said[0] if said else out.returncode})"
    importlib.invalidate_caches()
    return None if importlib.util.find_spec("matplotlib") is not None else "matplotlib not importable after pip install"


def chart(res: Results, systems: list[str], sizes, join_sizes, loss_cfgs, path: Path, title: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        return f"no chart: {e}"
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, ScalarFormatter

    def log_n_axis(ax, ns):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(ns))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("peers N")

    colors = {"rollcall": "tab:blue", "static": "tab:cyan", "classic": "tab:orange", "floor": "tab:green", "serf": "tab:purple"}
    fig, axes = plt.subplots(2, 2, figsize=(14, 10))

    def lat_panel(ax, scenario, ns, ttl):
        drawn = False
        for s in systems:
            xs, med, lo, hi = [], [], [], []
            for n in ns:
                lat = [r["latency_ms"] for r in res.ok((s, scenario, n, None)) if "latency_ms" in r]
                if lat:
                    m = statistics.median(lat)
                    xs.append(n)
                    med.append(m)
                    lo.append(m - min(lat))
                    hi.append(max(lat) - m)
            if xs:
                drawn = True
                ax.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=3, label=s, color=colors.get(s))
        log_n_axis(ax, ns)
        ax.set_yscale("log")
        ax.set_ylabel("ms (median, min–max)")
        ax.set_title(ttl)
        ax.grid(True, which="both", alpha=0.3)
        if drawn:
            ax.legend()
        else:
            ax.text(0.5, 0.5, "not run", ha="center", transform=ax.transAxes)

    lat_panel(axes[0][0], "start", sizes, "Barrier latency: all started, last start → last READY")
    lat_panel(axes[1][0], "join", join_sizes, "One peer joining N−1: its start → last READY")

    ax = axes[0][1]
    cfgs = [c for c in loss_cfgs if any(res.ok((s, "loss", c[0], c[1])) for s in systems)]
    if cfgs:
        width = 0.8 / max(len(systems), 1)
        for j, s in enumerate(systems):
            xs, med, lo, hi = [], [], [], []
            for i, (n, pct) in enumerate(cfgs):
                lat = [r["latency_ms"] / 1000 for r in res.ok((s, "loss", n, pct))]
                if lat:
                    m = statistics.median(lat)
                    xs.append(i + (j - (len(systems) - 1) / 2) * width)
                    med.append(m)
                    lo.append(m - min(lat))
                    hi.append(max(lat) - m)
            if xs:
                ax.bar(xs, med, width, yerr=[lo, hi], capsize=3, label=s, color=colors.get(s))
        ax.set_xticks(range(len(cfgs)))
        ax.set_xticklabels([f"{n} peers, {pct}%" for n, pct in cfgs])
        ax.set_ylabel("s (median, min–max)")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "loss scenarios not run", ha="center", transform=ax.transAxes)
    ax.set_title("Random loss (own netns per peer): last start → last READY")
    ax.grid(True, axis="y", alpha=0.3)

    ax = axes[1][1]
    drawn = False
    for s in systems:
        xs, ys = [], []
        for n in sizes:
            sent = [d for r in res.ok((s, "start", n, None)) for d in r.get("datagrams") or []]
            if sent:
                xs.append(n)
                ys.append(statistics.median(sent) / minimum(n))
        if xs:
            drawn = True
            label = "serf (UDP only: it joins and syncs over TCP too)" if s == "serf" else s
            ax.plot(xs, ys, marker="o", label=label, color=colors.get(s))
    ax.axhline(1, color="grey", linestyle="--", linewidth=1)
    log_n_axis(ax, sizes)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("median datagrams per peer / 1.5·(N−1)")
    ax.set_title("Datagrams until READY against the minimum (all started)")
    ax.grid(True, which="both", alpha=0.3)
    if drawn:
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}")
    if not sizes or any(n < 2 for n in sizes):
        raise argparse.ArgumentTypeError("every size must be at least 2 peers")
    return sizes


def parse_list(choices: list[str]):
    def parse(text: str) -> list[str]:
        items = [s.strip() for s in text.split(",") if s.strip()]
        bad = [s for s in items if s not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"choose from {','.join(choices)} (got {text!r})")
        return [c for c in choices if c in items]

    return parse


def shown(path) -> str:
    p = Path(path).resolve()
    return str(p.relative_to(Path.cwd())) if p.is_relative_to(Path.cwd()) else str(p)


def main() -> int:
    ap = argparse.ArgumentParser(
        description="Benchmark rollcall side by side with classic, floor and Serf (see the docstring of this script)."
    )
    ap.add_argument("--quick", action="store_true", help="the short run: under two minutes (see the docstring)")
    ap.add_argument("--runs", type=int, help="runs per system, scenario and size (default 5; --quick 3)")
    ap.add_argument(
        "--sizes", type=parse_sizes, help="cluster sizes of start and join (default 2,5,16,64,128,256; --quick 2,16,64)"
    )
    ap.add_argument(
        "--with-512",
        action="store_true",
        help="add 512 peers to the sizes (heavy on 2 cores: a run may take minutes, bounded by --wait + 0.25 s per peer)",
    )
    ap.add_argument(
        "--static-bin",
        default=str(ROOT / "target/x86_64-unknown-linux-gnu/release/rollcall"),
        help="the statically linked rollcall of system static (default: that of make static)",
    )
    ap.add_argument("--systems", type=parse_list(SYSTEMS), default=SYSTEMS, help=f"default {','.join(SYSTEMS)}")
    ap.add_argument(
        "--scenarios",
        type=parse_list(SCENARIOS),
        help=f"default {','.join(SCENARIOS)} (--quick: without sim)",
    )
    ap.add_argument(
        "--bin",
        default=os.environ.get("ROLLCALL_BIN", str(ROOT / "target/release/rollcall")),
        help="rollcall binary (default $ROLLCALL_BIN or target/release/rollcall)",
    )
    ap.add_argument("--classic", default=str(ROOT / "target/bench/classic"), help="bench/classic.c built (default target/bench/classic)")
    ap.add_argument("--serf", default=shutil.which("serf") or "serf", help="serf binary (default: serf on PATH)")
    ap.add_argument("--serf-max", type=int, help="largest Serf cluster of start and join (default 64; --quick 16)")
    ap.add_argument(
        "--csv", default=str(ROOT / "target/bench/bench.csv"), help="CSV output (default target/bench/bench.csv); the summary CSV, PNG and Markdown go next to it"
    )
    ap.add_argument("--cpu-seconds", type=float, help="idle CPU window; 0 skips idle (default 10; --quick 2)")
    ap.add_argument("--idle-cluster", type=int, help="peers of the whole-cluster idle measure (default 128; --quick 16)")
    ap.add_argument(
        "--base-port", type=int, default=40000, help="ports used are BASE+1..BASE+9000 (default 40000: 40001..48999, above the tests')"
    )
    ap.add_argument("--wait", type=float, default=30.0, help="bound on every wait, in seconds, plus 0.25 s per peer (default 30)")
    ap.add_argument(
        "--serf-wait",
        type=float,
        default=90.0,
        help="bound on Serf's waits, at least (default 90: a join its gossip missed waits for a push-pull sync)",
    )
    ap.add_argument("--loss-wait", type=float, help="bound on a loss batch, in seconds (default 120; --quick 45)")
    ap.add_argument("--host-net", action="store_true", help="loopback runs on the host's loopback, not in a namespace of ours")
    ap.add_argument("--sim-timeout", type=float, help="bound on the simulator's cargo test at each size (default 900 s, and 90 s per 1 000 nodes squared above that; --quick 40)")
    ap.add_argument("--sim-peers", help="comma-separated simulator sizes (default 1000; --quick 500), e.g. 1000,10000")
    args = ap.parse_args()

    q = args.quick
    args.runs = args.runs or (3 if q else 5)
    sim_left_out = q and args.scenarios is None
    args.scenarios = args.scenarios or [s for s in SCENARIOS if s != "sim" or not q]
    args.sizes = args.sizes or ([2, 16, 64] if q else [2, 5, 16, 64, 128, 256])
    if args.with_512 and 512 not in args.sizes:
        args.sizes.append(512)
    args.serf_max = args.serf_max or (16 if q else 64)
    args.cpu_seconds = (2.0 if q else 10.0) if args.cpu_seconds is None else args.cpu_seconds
    args.idle_cluster = args.idle_cluster or (16 if q else 128)
    args.loss_wait = args.loss_wait or (45.0 if q else 120.0)
    args.sim_timeout = args.sim_timeout or (40.0 if q else None)
    try:
        args.sim_peers = [int(n) for n in (args.sim_peers or ("500" if q else "1000")).split(",") if n.strip()]
    except ValueError:
        ap.error(f"--sim-peers: not a list of sizes: {args.sim_peers!r}")
    if any(n < 2 or n > 65535 for n in args.sim_peers):
        ap.error("--sim-peers: each size from 2 to 65535")
    loss_cfgs = QUICK_LOSS_CONFIGS if q else LOSS_CONFIGS
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if args.cpu_seconds < 0 or args.wait <= 0 or args.loss_wait <= 0:
        ap.error("--cpu-seconds must be >= 0, --wait and --loss-wait > 0")
    biggest = max(args.sizes + [args.idle_cluster]) * 2
    if not 1024 <= args.base_port or args.base_port + biggest > 65535:
        ap.error(f"--base-port: ports {args.base_port + 1}..{args.base_port + biggest} must lie in 1025..65535")

    # SIGTERM (and SIGHUP) unwind through the finally blocks like Ctrl-C does.
    def on_signal(signum, _frame):
        print(f"\nbench: {signal.Signals(signum).name}: stopping every peer, deleting the namespaces", file=sys.stderr)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    # The systems that can run here.
    systems: dict[str, System] = {}
    for name in args.systems:
        if name == "rollcall":
            if not (os.path.isfile(args.bin) and os.access(args.bin, os.X_OK)):
                print(f"bench: {args.bin}: no such executable (run 'make build', or pass --bin)", file=sys.stderr)
                return 2
            systems[name] = Rollcall(args.bin)
        elif name == "static":
            if os.access(args.static_bin, os.X_OK):
                systems[name] = Rollcall(args.static_bin, "static")
            else:
                say(f"SKIP static: {args.static_bin} missing (make static builds it; make bench does)")
        elif name in ("classic", "floor"):
            if not os.access(args.classic, os.X_OK) and Path(args.classic) == ROOT / "target/bench/classic":
                if shutil.which("gcc"):
                    say("bench: building target/bench/classic (gcc -O2)")
                    Path(args.classic).parent.mkdir(parents=True, exist_ok=True)
                    subprocess.run(["gcc", "-O2", "-o", args.classic, str(ROOT / "bench/classic.c")], check=False)
            if os.access(args.classic, os.X_OK):
                systems[name] = Classic(args.classic) if name == "classic" else Floor(args.classic)
            else:
                say(f"SKIP {name}: {args.classic} missing (make bench builds it with gcc)")
        elif name == "serf":
            if shutil.which(args.serf) or os.access(args.serf, os.X_OK):
                systems[name] = Serf(shutil.which(args.serf) or args.serf)
            else:
                say("SKIP serf: not installed (make bench installs it as root: apt-get install -y serf)")
    names = list(systems)
    sizes = args.sizes
    serf_sizes = [n for n in sizes if n <= args.serf_max]

    def sizes_for(name):
        return serf_sizes if name == "serf" else sizes

    png_reason = ensure_matplotlib()
    csv_path = Path(args.csv)
    out_dir = csv_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    summary_path = csv_path.with_name(csv_path.stem + "-summary.csv")
    png_path = csv_path.with_suffix(".png")
    md_path = csv_path.with_suffix(".md")

    say(
        f"rollcall bench: {shown(args.bin)} and {', '.join(n for n in names if n != 'rollcall') or 'no yardstick'};"
        f" {args.runs} runs; sizes {','.join(map(str, sizes))}"
        + (f" (Serf up to {args.serf_max})" if "serf" in systems and serf_sizes != sizes else "")
        + ("; QUICK" if q else "")
    )
    if "serf" in systems and [n for n in sizes if n > args.serf_max]:
        say(f"  serf: sizes above --serf-max {args.serf_max} skipped ({','.join(str(n) for n in sizes if n > args.serf_max)})")
    res = Results()
    notes: list[str] = []
    ports = Ports(args.base_port)
    why_no_netns = netns_missing()
    net = Net() if why_no_netns is None else None
    idle_sizes: list[tuple[int, bool]] = []
    sim_rows: list[dict] = []
    t_begin = time.monotonic()
    scope = "host-wide"

    def report(name, scenario, n, run, r, extra=""):
        prefix = f"  {name:<8} {scenario:<5} N={n:<3}{extra} run {run}/{args.runs}:"
        if isinstance(r, str):
            say(f"{prefix} FAILED: {r}")
            return
        bits = [f"{r['latency_ms']:9.2f} ms"]
        if "warmup_ms" in r:
            bits.append(f"(warm-up {r['warmup_ms']:.0f} ms)")
        sent = r.get("datagrams") or []
        if sent:
            bits.append(f"datagrams/peer median {fmt_num(statistics.median(sent))} max {max(sent)} (min {fmt_num(minimum(n))})")
        if r.get("ready_cpu_ms"):
            bits.append(f"cpu/peer {statistics.median(r['ready_cpu_ms']):.1f} ms")
        if r.get("vmhwm"):
            bits.append(f"VmHWM max {max(r['vmhwm'])} KiB")
        if r.get("rcvbuf_errors"):
            bits.append(f"rcvbuf drops {r['rcvbuf_errors']}")
        say(f"{prefix} " + "   ".join(bits))

    with tempfile.TemporaryDirectory(prefix="rollcall-bench.") as tmp:
        workdir = Path(tmp)
        try:
            loop_scen = [s for s in ("start", "join", "idle") if s in args.scenarios]
            if loop_scen and names:
                lo_ns = None
                if net is not None and not args.host_net:
                    lo_ns = net.loopback()
                    say(f"  loopback runs in network namespace {lo_ns} (its own lo and UDP counters)")
                else:
                    say(
                        "  loopback runs on the host's loopback"
                        + (f" ({why_no_netns} for a namespace of our own)" if why_no_netns else "")
                        + ": UdpRcvbufErrors are host-wide"
                    )
                env = Env(args, ports, workdir, lo_ns)
                scope = env.scope
                with in_netns(lo_ns):
                    for scenario in ("start", "join"):
                        if scenario not in args.scenarios:
                            continue
                        say(
                            "start: all N started back to back; last start -> last READY"
                            if scenario == "start"
                            else "join: N-1 exchanging, then peer N; its start -> last READY"
                        )
                        for n in sizes:
                            for name in names:
                                if n not in sizes_for(name):
                                    continue
                                for run in range(1, args.runs + 1):
                                    fn = start_run if scenario == "start" else join_run
                                    try:
                                        r = fn(env, systems[name], n, notes)
                                        r["rcvbuf_scope"] = env.scope
                                    except RunFailed as e:
                                        r = str(e)
                                    res.add(name, scenario, n, run, r)
                                    report(name, scenario, n, run, r)
                    if "idle" in args.scenarios and args.cpu_seconds > 0:
                        idle_sizes = [(5, True), (args.idle_cluster, False)]
                        jobs = []
                        for n, _per_peer in idle_sizes:
                            for name in names:
                                jobs.append((systems[name], n))
                        # The small clusters side by side, in one window; each
                        # big one alone, so that one busy cluster (Serf's 128
                        # agents take most of a core) does not crowd another.
                        small = [j for j in jobs if j[1] <= 16]
                        batches = ([small] if small else []) + [[j] for j in jobs if j[1] > 16]
                        say(
                            f"idle: READY clusters at the default interval, {args.cpu_seconds:g} s windows"
                            f" ({len(small)} small clusters side by side, then each bigger one alone)"
                        )
                        done = []
                        for batch in batches:
                            done += list(zip(batch, idle_batch(env, batch, args.cpu_seconds, notes)))
                        for (system, n), r in done:
                            name = system.name
                            res.add(name, "idle", n, 1, r)
                            if isinstance(r, str):
                                say(f"  {name:<8} idle  N={n:<3}: FAILED: {r}")
                            else:
                                sp = r["sched_pct"]
                                say(
                                    f"  {name:<8} idle  N={n:<3}: per peer median {statistics.median(sp):.4f}%"
                                    f" max {max(sp):.4f}%, whole cluster {sum(sp):.3f}% of one core"
                                    f" over {r['window']:.1f} s"
                                )
                if lo_ns is not None:
                    for e in net.remove([lo_ns]):
                        notes.append(f"netns teardown: {e}")

            if "loss" in args.scenarios and names:
                if net is None:
                    say(f"SKIP loss: {why_no_netns} (network namespaces, veth, nftables)")
                else:
                    say("loss: each peer in its own netns, nftables dropping packets at random; last start -> last READY")
                    for n, pct in loss_cfgs:
                        batch = [systems[s] for s in names if s != "serf" or n <= args.serf_max]
                        say(f"  {n} peers, {pct}% loss: {len(batch) * args.runs} clusters at once ...")
                        try:
                            out = loss_batch(net, batch, n, pct, args.runs, ports, workdir, args.loss_wait, notes)
                        except RunFailed as e:
                            out = [(s, run, f"setup: {e}") for s in batch for run in range(1, args.runs + 1)]
                        for system, run, r in out:
                            if not isinstance(r, str):
                                r["rcvbuf_scope"] = "peer netns (sum)"
                            res.add(system.name, "loss", n, run, r, loss=pct)
                            report(system.name, "loss", n, run, r, extra=f" {pct}%")
        finally:
            if net is not None:
                for e in net.remove_all():
                    notes.append(f"netns teardown: {e}")

    if sim_left_out:
        say("SKIP sim: not part of --quick (--scenarios start,join,loss,idle,sim adds it)")
    if "sim" in args.scenarios:
        cargo = os.environ.get("CARGO", "cargo")
        rows = []
        for n in args.sim_peers:
            say(f"sim: ROLLCALL_SCALE_PEERS={n} cargo test --release --lib machine::scale::figures -- --ignored --nocapture")
            timeout = args.sim_timeout or max(900.0, 90.0 * (n / 1000) ** 2)
            got, why = sim_lines(cargo, timeout, n)
            if why:
                say(f"sim: {why} (its lines so far are kept)" if got else f"SKIP sim {n}: {why}")
                notes.append(f"sim {n}: {why}")
            rows += got
        for i, r in enumerate(rows, 1):
            res.rows.append(
                {
                    "system": "rollcall-sim",
                    "scenario": "sim",
                    "peers": r["peers"],
                    "loss_pct": r["loss_pct"],
                    "run": i,
                    "status": "ok",
                    "latency_ms": f"{r['ready_ms']:.3f}",
                    "sim_datagrams": r["datagrams"],
                    "sim_minimum": r["minimum"],
                    "sim_spread_ms": f"{r['spread_ms']:g}",
                }
            )
            say(
                f"  SIM peers={r['peers']} loss={r['loss_pct']} ready_ms={r['ready_ms']} datagrams={r['datagrams']}"
                f" minimum={r['minimum']} spread_ms={r['spread_ms']:g}"
            )
        sim_rows = rows

    # Outputs.
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(res.rows)
    with open(summary_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        w.writeheader()
        w.writerows(res.summary())
    join_sizes = sizes
    md = markdown(res, names, sizes, join_sizes, loss_cfgs, idle_sizes, sim_rows, args.runs, scope)
    title = f"rollcall bench{' (QUICK)' if q else ''}, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores"
    header = f"### {title}\n\n"
    md_path.write_text(header + md)
    say()
    say(header + md)
    if png_reason is None:
        png_reason = chart(res, names, sizes, join_sizes, loss_cfgs, png_path, title)
    say(f"wrote {shown(csv_path)}, {shown(summary_path)}, {shown(md_path)}" + ("" if png_reason else f", {shown(png_path)}"))
    if png_reason:
        say(f"SKIP chart: {png_reason}")
    say(f"bench took {time.monotonic() - t_begin:.0f} s")
    if notes:
        say("\nnotes (behaviour that differs from the contract, or from the plan):")
        for note in list(dict.fromkeys(notes))[:40]:
            say(f"  - {note}")
    if res.failures:
        print(f"\nbench: {res.failures} run(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\nbench: interrupted (every peer stopped, the namespaces deleted)", file=sys.stderr)
        sys.exit(130)
