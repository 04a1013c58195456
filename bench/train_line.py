"""Does a full training line slow generation down? A 200-token /generate on the char model, timed on an idle
server and again while one visitor's training runs and four more wait in line (each from its own address).

    python -m bench.train_line [--rounds 5]

Starts `python app.py --no-hub` on a free port, calls it over loopback with gradio_client, prints a table
(median and spread of the rounds) and writes bench/train_line.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def timed_generate(client, rounds: int) -> list[float]:
    times = []
    for i in range(rounds):
        began = time.perf_counter()
        result = client.predict("char", "ROMEO:", 0.8, 200, 0, 1.0, i + 1, False, api_name="/generate")
        times.append(time.perf_counter() - began)
        assert result["float32"]["tokens"] == 200
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    from gradio_client import Client

    sys.path.insert(0, str(PROJECT / "tests"))
    from app_support import free_port, wait_until_serving

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen([sys.executable, "app.py", "--no-hub", "--port", str(port)], cwd=PROJECT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_serving(url, server)
        visitor = Client(url, verbose=False, headers={"X-Forwarded-For": "10.9.0.100"})
        timed_generate(visitor, 1)  # warm up
        idle = timed_generate(visitor, args.rounds)
        text = (PROJECT / "data" / "tinyshakespeare.txt").read_text()[:200_000]
        jobs = []
        for i in range(5):  # one trains, four wait
            client = Client(url, verbose=False, headers={"X-Forwarded-For": f"10.9.0.{i + 1}"})
            jobs.append(client.submit(text, "char", "small", 120, api_name="/train"))
            time.sleep(1.0)
        while not any(update.get("status") == "training" for update in jobs[0].outputs()):
            time.sleep(0.5)
        for _ in range(40):  # each waiting visitor hears its place within a second or two
            waiting = sum(1 for job in jobs[1:] if any(u.get("status") == "waiting" for u in job.outputs()))
            if waiting == 4:
                break
            time.sleep(0.25)
        busy = timed_generate(visitor, args.rounds)
        for job in jobs:
            job.cancel()
    finally:
        server.terminate()
        server.wait(30)

    def row(label, times):
        return (f"| {label} | {statistics.median(times):.3f} | {min(times):.3f}–{max(times):.3f} |")

    ratio = statistics.median(busy) / statistics.median(idle)
    table = "\n".join([
        f"A 200-token /generate on the char model (float and int8 side by side), {args.rounds} rounds each, "
        f"over loopback; `python -m bench.train_line` on {os.cpu_count()} cores.", "",
        "| server | median s | range s |", "|---|---|---|",
        row("idle", idle), row(f"1 training running, {waiting} waiting", busy), "",
        f"Busy ÷ idle (medians): **{ratio:.2f}×**.", ""])
    print(table)
    (PROJECT / "bench" / "train_line.md").write_text(table)


if __name__ == "__main__":
    main()
