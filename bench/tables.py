#!/usr/bin/env python3
"""The README's Performance tables from the output of one bench/run.sh.

    bench/tables.py OUTPUT

prints, as Markdown: requests/s (p99) at 64 and at 1 connection for each line and server (with
the lowest and highest steal of each server's lines, when the run gave it), the peer beside us
at 64 connections (1 in brackets), and the memory of each server, all read from
OUTPUT (what run.sh printed). A line the run did not make shows as "-". Nothing is computed
but rounding and ratios of two printed numbers.
"""

import re
import sys

SERVERS = [("sqlite", "RS256"), ("sqlite", "ES256"), ("postgres", "RS256"), ("postgres", "ES256")]
HEADINGS = ["SQLite RS256", "SQLite ES256", "PostgreSQL RS256", "PostgreSQL ES256"]

# The run's line names, in the README's order, with the README's row names.
ROWS = [
    ("cc jwt", "client_credentials, JWT access token"),
    ("cc opaque", "client_credentials, opaque access token"),
    ("cc jwt, private_key_jwt", "client_credentials, `private_key_jwt` (ES256 assertion)"),
    ("introspect jwt", "introspection, one JWT"),
    ("introspect opaque", "introspection, one opaque token"),
    ("introspect distinct jwt", "introspection, {n} distinct JWTs{fewer}"),
    ("introspect distinct opaque", "introspection, {n} distinct opaque tokens{fewer}"),
    ("authorize (SSO, silent)", "authorize with an SSO session (303 + code)"),
    ("userinfo", "userinfo"),
    ("refresh (rotation)", "refresh with rotation"),
    ("code flow (SSO)", "complete code flows (authorize + token with ID token), flows/s"),
    ("password sign-in", "password sign-ins through the page, sign-ins/s (% of argon2 limit)"),
]

LINE = re.compile(r"^ostiary/(\w+)/(\w+) (.+?)\s+c=(\d+)\s+([\d.]+) req/s\s+p50 (\S+)\s+p99 (\S+)(.*)$")


def count(n):
    """A rate as the README writes it: whole, with thousands separated."""
    return f"{float(n):,.0f}"


def latency(v):
    """wrk's latency ("8.60ms", "530.00us", "2.59s") as the README writes it."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", v)
    if not m:
        return v
    x, unit = float(m.group(1)), m.group(2)
    if unit == "us":
        return f"{x:.0f} us"
    if unit == "ms":
        return f"{x:.1f} ms"
    return f"{x:.2f} s"


def parse(text):
    lines = {}
    for raw in text.splitlines():
        m = LINE.match(raw)
        if not m:
            continue
        db, alg, name, c, rps, _p50, p99, rest = m.groups()
        # The run's own line: a results file may add later runs of a line after it.
        lines.setdefault((db, alg, name.strip(), int(c)), (rps, p99, rest))
    return lines


def cell(lines, db, alg, name, c):
    got = lines.get((db, alg, name, c))
    if not got:
        return "-"
    rps, p99, rest = got
    if name == "code flow (SSO)":
        m = re.search(r"([\d.]+) flows/s", rest)
        return f"{count(m.group(1))} ({latency(p99)})" if m else "-"
    if name == "password sign-in":
        m = re.search(r"([\d.]+) sign-ins/s = (\d+)% of argon2 limit", rest)
        return f"{count(m.group(1))} ({m.group(2)} %)" if m else "-"
    return f"{count(rps)} ({latency(p99)})"


def distinct(lines, name):
    """The number of distinct tokens the line went through, and each server's that had fewer."""
    seen = []
    for (db, alg) in SERVERS:
        for c in (1, 64):
            got = lines.get((db, alg, name, c))
            if got:
                m = re.search(r"(\d+) distinct tokens", got[2])
                if m:
                    seen.append((db, alg, int(m.group(1))))
    full = max((n for _, _, n in seen), default=20000)
    fewer = sorted({(db, alg, n) for db, alg, n in seen if n < full})
    note = ""
    if fewer:
        note = " (" + "; ".join(f"{n:,} on {'SQLite' if db == 'sqlite' else 'PostgreSQL'} with {alg}"
                                for db, alg, n in fewer) + ")"
    return f"{full:,}", note


def table(lines, c):
    out = ["| path | " + " | ".join(HEADINGS) + " |", "| --- | --- | --- | --- | --- |"]
    for name, row in ROWS:
        if "{n}" in row:
            n, fewer = distinct(lines, name)
            row = row.format(n=n, fewer=fewer)
        cells = [cell(lines, db, alg, name, c) for db, alg in SERVERS]
        if all(x == "-" for x in cells):
            continue
        out.append(f"| {row} | " + " | ".join(cells) + " |")
    steals = [steal_range(lines, db, alg, c) for db, alg in SERVERS]
    if any(x != "-" for x in steals):
        out.append("| steal: share of the cores the hypervisor took during these lines | " + " | ".join(steals) + " |")
    return "\n".join(out)


def steal_range(lines, db, alg, c):
    """The lowest and highest steal of a server's lines in the table at C connections."""
    got = []
    for name, _ in ROWS:
        line = lines.get((db, alg, name, c))
        m = re.search(r"steal ([\d.]+)%", line[2]) if line else None
        if m:
            got.append(float(m.group(1)))
    return f"{min(got):.0f} to {max(got):.0f} %" if got else "-"


def peers(text):
    """Our/peer rows from the run's ratio lines: `ratio DB ALG-or-none NAME c=N ours/peer = R (O / P req/s)`."""
    ratio = re.compile(r"^ratio (\w+) (.+?) c=(\d+)\s+ours/peer = ([\d.]+) \(([\d.]+) / ([\d.]+) req/s\)")
    # Keyed by server, line and connections; introspection by the peer's half too (the ratio
    # lines follow each peer's heading: the RS256 peer, then the ES256 one).
    got = {}
    half = None
    for raw in text.splitlines():
        h = re.match(r"^== peer: node-oidc-provider, (\w+) access tokens", raw)
        if h:
            half = h.group(1)
        m = ratio.match(raw)
        if m:
            db, what, c, r, ours, peer = m.groups()
            if what == "introspect opaque":
                what = f"introspect opaque {half}"
            got.setdefault((db, what, int(c)), (float(r), float(ours), float(peer)))
    if not got:
        return ""
    rows = [
        ("client_credentials, ES256 JWT", "ES256 cc jwt"),
        ("client_credentials, RS256 JWT", "RS256 cc jwt"),
        ("introspection, opaque (RS256 half)", "introspect opaque RS256"),
        ("introspection, opaque (ES256 half)", "introspect opaque ES256"),
    ]
    out = ["| | peer | Ostiary SQLite | Ostiary PostgreSQL | ours/peer |", "| --- | --- | --- | --- | --- |"]

    for label, what in rows:
        s64, p64 = got.get(("sqlite", what, 64)), got.get(("postgres", what, 64))
        s1, p1 = got.get(("sqlite", what, 1)), got.get(("postgres", what, 1))
        if not (s64 and p64):
            continue
        peer = f"{count(s64[2])}" + (f" ({count(s1[2])})" if s1 else "")
        sq = f"{count(s64[1])}" + (f" ({count(s1[1])})" if s1 else "")
        pg = f"{count(p64[1])}" + (f" ({count(p1[1])})" if p1 else "")
        r = f"{s64[0]:.1f} and {p64[0]:.1f}" + (f" ({s1[0]:.1f}, {p1[0]:.1f})" if s1 and p1 else "")
        out.append(f"| {label} | {peer} | {sq} | {pg} | {r} |")
    steal = re.findall(r"^== steal over the peer's runs: ([\d.]+)%", text, re.M)
    if steal:
        out.append("\nSteal over the peer's runs: " + " and ".join(f"{float(x):.0f} %" for x in steal) + ".")
    return "\n".join(out)


def memory(text):
    # Each server's heading gives its idle RSS, and its last lines its peak.
    ours = re.findall(r"^== ostiary on (\w+), (\w+): idle RSS ([\d.]+) MB.*?^   peak RSS ([\d.]+) MB", text, re.M | re.S)
    peer_idle = [int(k) / 1024 for k in re.findall(r"^== idle RSS: VmHWM:\s+\d+ kB VmRSS:\s+(\d+) kB", text, re.M)]
    after = re.findall(r"^== RSS after load: VmHWM:\s+(\d+) kB VmRSS:\s+(\d+) kB", text, re.M)
    peer_peak = [int(h) / 1024 for h, _ in after]
    peer_after = [int(r) / 1024 for _, r in after]
    out = []
    first = {}
    for d, a, i, p in ours:
        first.setdefault((d, a), (float(i), float(p)))
    for db in ("sqlite", "postgres"):
        idle = [i for (d, _), (i, _) in first.items() if d == db]
        peak = [p for (d, _), (_, p) in first.items() if d == db]
        if idle:
            out.append(f"{db}: idle {min(idle):.1f} to {max(idle):.1f} MB, peak {min(peak):.1f} to {max(peak):.1f} MB")
    if peer_idle:
        out.append(f"peer: idle {min(peer_idle):.1f} to {max(peer_idle):.1f} MB, after load "
                   f"{min(peer_after):.1f} to {max(peer_after):.1f} MB (peak {min(peer_peak):.1f} to {max(peer_peak):.1f} MB)")
    return "\n".join(out)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: bench/tables.py OUTPUT (what bench/run.sh printed)")
    try:
        with open(sys.argv[1], encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        sys.exit(f"bench/tables.py: cannot read {sys.argv[1]}: {e}")
    if not any(LINE.match(line) for line in text.splitlines()):
        sys.exit(f"bench/tables.py: {sys.argv[1]} has no line of bench/run.sh's output")
    lines = parse(text)
    print("At 64 connections, requests/s (p99 of a request):\n")
    print(table(lines, 64))
    print("\nAt 1 connection, requests/s (p99 of a request):\n")
    print(table(lines, 1))
    p = peers(text)
    if p:
        print("\nThe peer in the same run, requests/s at 64 connections (1 connection in brackets):\n")
        print(p)
    print("\nMemory (VmRSS):\n")
    print(memory(text))


if __name__ == "__main__":
    main()
