"""What one flooding client costs everyone else: another visitor's /generate, idle and under each flood.

    python -m bench.flood [--seconds 45] [--requests 100] [--rounds 7]

Starts `python app.py --no-hub` on loopback, with X-Forwarded-For naming the clients as a Space's proxy does
(LSTMGEN_TRUSTED_PROXIES=1). The visitor asks /generate for 200 characters of the char model, both copies, one
call after another, `rounds` times idle and then during each flood; each flood is one client (one address)
sending /cells, /score or /generate (1,000 characters) on 10,000 characters of text, or all three, from 8
threads at once, each sending its next call as soon as its last is answered (a second after a refusal): at most `requests`
calls and `seconds` seconds. Prints a table and writes bench/flood.md: the visitor's median (p50) and p95
latency, idle and under each flood, their ratio, and how many of the visitor's calls were refused; and how
many of the flood's calls the server took and refused.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from .inspect import machine

OUT = Path(__file__).resolve().parent / "flood.md"
PROJECT = Path(__file__).resolve().parent.parent
TEXT = (PROJECT / "data" / "tinyshakespeare.txt").read_text()[:10_000]
FLOODS = {"cells": [("cells", ["char", TEXT, 1, 1])], "score": [("score", ["char", TEXT])],
          "generate": [("generate", ["char", "ROMEO:", 0.8, 1000])]}
FLOODS["all three"] = FLOODS["cells"] + FLOODS["score"] + FLOODS["generate"]


def call(url: str, api_name: str, data: list, address: str) -> tuple[int, float]:
    """One REST call to the end (POST, then its result stream): (HTTP status of the POST, seconds)."""
    began = time.monotonic()
    headers = {"X-Forwarded-For": address}
    joined = httpx.post(f"{url}gradio_api/call/{api_name}", json={"data": data}, headers=headers, timeout=120)
    if joined.status_code == 200:
        event = joined.json()["event_id"]
        with httpx.stream("GET", f"{url}gradio_api/call/{api_name}/{event}", headers=headers, timeout=300) as answer:
            for line in answer.iter_lines():
                if line.startswith("event: complete") or line.startswith("event: error"):
                    break
    return joined.status_code, time.monotonic() - began


def visitor(url: str, rounds: int) -> tuple[list[float], int]:
    times, refused = [], 0
    for _ in range(rounds):
        status, seconds = call(url, "generate", ["char", "ROMEO:", 0.8, 200], "198.51.100.7")
        if status == 200:
            times.append(seconds)
        else:
            refused += 1
    return times, refused


def flooding(url: str, calls: list, stop: threading.Event, budget: int, tally: dict) -> list[threading.Thread]:
    lock = threading.Lock()

    def worker(i):
        while not stop.is_set():
            with lock:
                if tally["sent"] >= budget:
                    return
                tally["sent"] += 1
            api_name, data = calls[(i + tally["sent"]) % len(calls)]
            status, _ = call(url, api_name, data, "203.0.113.66")
            with lock:
                tally["taken" if status == 200 else "refused"] += 1
            if status != 200:
                time.sleep(1.0)  # refused at once: try again in a second (the flood stays on, within its budget)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(8)]
    for thread in threads:
        thread.start()
    return threads


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=45.0)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", choices=list(FLOODS), help="one flood instead of each in turn")
    parser.add_argument("--port", type=int, default=7869)
    parser.add_argument("--out", type=Path, default=OUT, help="where the report goes (default bench/flood.md)")
    args = parser.parse_args(argv)
    env = {**os.environ, "LSTMGEN_TRUSTED_PROXIES": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "HF_HUB_OFFLINE": "1", "NO_PROXY": "127.0.0.1,localhost"}
    server = subprocess.Popen([sys.executable, "app.py", "--no-hub", "--port", str(args.port)], cwd=PROJECT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{args.port}/"
    rows = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "config", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        visitor(url, 2)  # warm up
        idle, refused = visitor(url, args.rounds)
        rows.append(("none (idle)", idle, refused, None))
        for name, calls in FLOODS.items():
            if args.only and name != args.only:
                continue
            stop, tally = threading.Event(), {"sent": 0, "taken": 0, "refused": 0}
            threads = flooding(url, calls, stop, args.requests, tally)
            time.sleep(2)  # the flood is on
            began = time.monotonic()
            times, refused = visitor(url, args.rounds)
            while time.monotonic() - began < min(10.0, args.seconds) and tally["sent"] < args.requests:
                time.sleep(0.5)
            stop.set()
            for thread in threads:
                thread.join(300)
            rows.append((name, times, refused, dict(tally)))
            time.sleep(3)  # the server drains before the next flood
    finally:
        server.terminate()
        server.wait(30)
    base = statistics.median(rows[0][1])
    lines = [f"Machine: {machine()}. `python -m bench.flood --seconds {args.seconds:g} --requests {args.requests} "
             f"--rounds {args.rounds}`.", "",
             "| flood from one client | visitor p50 (s) | visitor p95 (s) | p50 ÷ idle | visitor refused | "
             "flood calls taken / refused |", "|---|---|---|---|---|---|"]
    for name, times, refused, tally in rows:
        flood = f"{tally['taken']} / {tally['refused']}" if tally else "–"
        lines.append(f"| {name} | {statistics.median(times):.2f} | {percentile(times, 0.95):.2f} | "
                     f"{statistics.median(times) / base:.2f} | {refused} of {len(times) + refused} | {flood} |")
    report = "\n".join(lines)
    print(report)
    args.out.write_text("# One client floods, another generates\n\n" + __doc__.split("\n\n", 1)[1] + "\n" + report + "\n")


if __name__ == "__main__":
    main()
