#!/usr/bin/env python3
"""What the server logged as slow since a point in its JSON log.

    bench/slow.py LOG OFFSET

reads LOG (the server's log, `log_format = "json"`) from byte OFFSET on and prints one line: the
requests answered after `server.slow_request` or more (how many, the slowest) and the statements
that ran `database.slow_statement` or more, by statement (how many, the slowest), slowest first.
Prints nothing when there were none. run.sh calls it after each wrk run, so a stall shows under
the line it happened in, on the server's side or not at all (then it was outside the server:
the kernel, the load generator, the machine).
"""

import json
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: bench/slow.py LOG OFFSET")
    try:
        with open(sys.argv[1], "rb") as f:
            f.seek(int(sys.argv[2]))
            text = f.read().decode("utf-8", "replace")
    except (OSError, ValueError) as e:
        sys.exit(f"bench/slow.py: {e}")
    requests = []
    statements = {}
    for raw in text.splitlines():
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        message = str(event.get("message", ""))
        if message.startswith("slow request"):
            requests.append(float(event.get("latency_ms", 0)))
        elif message.startswith("slow statement"):
            what = " ".join(str(event.get("summary", "?")).split())
            statements.setdefault(what, []).append(1000 * float(event.get("elapsed_secs", 0)))
    if not requests and not statements:
        return
    parts = []
    if requests:
        parts.append(f"{len(requests)} requests, the slowest {max(requests):.0f} ms")
    for what, times in sorted(statements.items(), key=lambda kv: -max(kv[1])):
        parts.append(f"{len(times)} x {what}, the slowest {max(times):.0f} ms")
    print("   slow in the server: " + "; ".join(parts))


if __name__ == "__main__":
    main()
