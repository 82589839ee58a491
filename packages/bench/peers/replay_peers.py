#!/usr/bin/env python3
"""Replays allocation traces through the peers of gpupool on a CUDA GPU and prints, per
(trace, peer), one JSON object per line with the same fields as `gpupool-bench replay --json`:
trace, policy, device, ops, peakLiveBytes, peakReservedBytes, ratio, nsPerOp, deviceCalls
(plus runs and source="peer").

Peers: PyTorch's caching allocator (default, and PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True),
CuPy's MemoryPool and CuPy's MemoryAsyncPool (cudaMallocAsync). The driver mode (default) runs
every (trace, peer) in a fresh Python process, as the allocator settings are per process; the
worker mode (--one TRACE --peer NAME) does one replay set and prints one line.

Method, per (trace, peer): parse the trace first (not timed); one untimed replay that measures
peak reserved bytes (the peer's own counter, polled after each allocation where the peer has no
high-water mark); then --runs timed replays from an emptied pool; nsPerOp is their median.
Each allocation is BYTES of uint8, as in the traces README. `a ID 0` allocates 0 bytes.

Trace format (../../../shared/traces/README.md): gzip text; `a ID BYTES`, `f ID`; `#` comments.
"""
import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import time

PEERS = ("pytorch-default", "pytorch-expandable", "cupy-pool", "cupy-async")
RUNS_DEFAULT = 5


def read_trace(path):
    """Returns (name, ops, peak_live_bytes): ops is a list of (is_alloc, id, bytes)."""
    opener = gzip.open if path.endswith(".gz") else open
    base = os.path.basename(path)
    for suffix in (".trace.gz", ".trace", ".gz"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    ops = []
    live = {}
    live_bytes = peak = 0
    with opener(path, "rt") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if parts[0] == "a" and len(parts) == 3:
                block, size = int(parts[1]), int(parts[2])
                if block in live or size < 0:
                    raise ValueError(f"{path}:{number}: bad allocation: {line}")
                live[block] = size
                live_bytes += size
                peak = max(peak, live_bytes)
                ops.append((True, block, size))
            elif parts[0] == "f" and len(parts) == 2:
                block = int(parts[1])
                if block not in live:
                    raise ValueError(f"{path}:{number}: free of a block that is not live: {line}")
                live_bytes -= live.pop(block)
                ops.append((False, block, 0))
            else:
                raise ValueError(f"{path}:{number}: expected 'a ID BYTES' or 'f ID': {line}")
    return base, ops, peak


class TorchPeer:
    def __init__(self):
        import torch

        self.torch = torch
        self.device = torch.device("cuda")
        torch.cuda.init()
        torch.empty(0, dtype=torch.uint8, device=self.device)  # create the context before timing

    def alloc(self, size):
        return self.torch.empty(size, dtype=self.torch.uint8, device=self.device)

    def reset(self):
        self.torch.cuda.synchronize()
        self.torch.cuda.empty_cache()
        self.torch.cuda.reset_peak_memory_stats()

    def reserved(self):
        return self.torch.cuda.memory_reserved()

    def peak_reserved(self):
        return self.torch.cuda.max_memory_reserved()

    def device_calls(self):
        return int(self.torch.cuda.memory_stats().get("segment.all.allocated", 0))

    def sync(self):
        self.torch.cuda.synchronize()


class CupyPeer:
    def __init__(self, asynchronous):
        import cupy

        self.cupy = cupy
        self.pool = cupy.cuda.MemoryAsyncPool() if asynchronous else cupy.cuda.MemoryPool()
        cupy.cuda.set_allocator(self.pool.malloc)
        cupy.empty(0, dtype=cupy.uint8)

    def alloc(self, size):
        return self.cupy.empty(size, dtype=self.cupy.uint8)

    def reset(self):
        self.cupy.cuda.Device().synchronize()
        self.pool.free_all_blocks()

    def reserved(self):
        return self.pool.total_bytes()

    def peak_reserved(self):
        return None  # CuPy keeps no high-water mark: polled instead

    def device_calls(self):
        return None

    def sync(self):
        self.cupy.cuda.Device().synchronize()


def make_peer(name):
    if name in ("pytorch-default", "pytorch-expandable"):
        return TorchPeer()
    if name == "cupy-pool":
        return CupyPeer(asynchronous=False)
    if name == "cupy-async":
        return CupyPeer(asynchronous=True)
    raise ValueError(f"unknown peer {name!r} (known: {', '.join(PEERS)})")


def replay(peer, ops, id_count, poll_reserved):
    """One replay; returns (elapsed_ns, peak_reserved_polled)."""
    blocks = [None] * id_count
    alloc = peer.alloc
    peak = 0
    start = time.perf_counter_ns()
    if poll_reserved:
        reserved = peer.reserved
        for is_alloc, block, size in ops:
            if is_alloc:
                blocks[block] = alloc(size)
                r = reserved()
                if r > peak:
                    peak = r
            else:
                blocks[block] = None
    else:
        for is_alloc, block, size in ops:
            if is_alloc:
                blocks[block] = alloc(size)
            else:
                blocks[block] = None
    peer.sync()
    elapsed = time.perf_counter_ns() - start
    blocks.clear()
    return elapsed, peak


def run_one(path, peer_name, runs):
    name, ops, peak_live = read_trace(path)
    id_count = 1 + max((block for _, block, _ in ops), default=-1)
    peer = make_peer(peer_name)
    peer.reset()
    calls_before = peer.device_calls()
    _, polled = replay(peer, ops, id_count, poll_reserved=True)
    own_peak = peer.peak_reserved()
    peak_reserved = own_peak if own_peak is not None else polled
    calls_after = peer.device_calls()
    times = []
    for _ in range(runs):
        peer.reset()
        elapsed, _ = replay(peer, ops, id_count, poll_reserved=False)
        times.append(elapsed / max(1, len(ops)))
    return {
        "trace": name,
        "policy": peer_name,
        "device": "cuda",
        "ops": len(ops),
        "peakLiveBytes": peak_live,
        "peakReservedBytes": peak_reserved,
        "ratio": peak_reserved / peak_live if peak_live > 0 else 1.0,
        "nsPerOp": statistics.median(times),
        "deviceCalls": None if calls_before is None else calls_after - calls_before,
        "runs": runs,
        "source": "peer",
    }


def child_env(peer_name):
    env = dict(os.environ)
    if peer_name == "pytorch-expandable":
        env["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
    elif peer_name == "pytorch-default":
        env.pop("PYTORCH_CUDA_ALLOC_CONF", None)
    return env


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("traces", nargs="*", help="trace files (.trace.gz)")
    parser.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated subset of {','.join(PEERS)}")
    parser.add_argument("--runs", type=int, default=RUNS_DEFAULT, help="timed replays per (trace, peer)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per child process")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    parser.add_argument("--parse-only", action="store_true", help="parse the traces and print their summary (no GPU)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.peer, args.runs)), flush=True)
        return 0
    if not args.traces:
        parser.error("give at least one trace file")
    if args.parse_only:
        for path in args.traces:
            name, ops, peak = read_trace(path)
            print(json.dumps({"trace": name, "ops": len(ops), "peakLiveBytes": peak}), flush=True)
        return 0
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)} (known: {', '.join(PEERS)})")
    failures = 0
    for path in args.traces:
        for peer in peers:
            command = [sys.executable, os.path.abspath(__file__), "--one", path, "--peer", peer, "--runs", str(args.runs)]
            try:
                done = subprocess.run(
                    command, env=child_env(peer), capture_output=True, text=True, timeout=args.timeout
                )
            except subprocess.TimeoutExpired:
                failures += 1
                print(f"replay_peers: {path} {peer}: timed out after {args.timeout} s", file=sys.stderr)
                continue
            line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
            if done.returncode != 0 or not line.startswith("{"):
                failures += 1
                tail = (done.stderr or "").strip().splitlines()[-3:]
                print(f"replay_peers: {path} {peer}: failed ({done.returncode}): {' | '.join(tail)}", file=sys.stderr)
                continue
            print(line, flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
