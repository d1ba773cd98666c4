#!/usr/bin/env python3
"""Server time of every console page on a running demo (the `Server-Timing` header each console
response carries), for docs/benchmarks.md.

    python3 bench/console_pages.py http://127.0.0.1:8080 huiyuan-data/demo-credentials.json [ROUNDS]

Signs in as the demo's admin, finds a member with purchases, then requests each page ROUNDS times
(default 20) in turn and prints the first (cold) request's, the median and the slowest server
time per page. Standard library
only.
"""
import http.cookiejar
import json
import re
import statistics
import sys
import urllib.parse
import urllib.request

base, creds_file = sys.argv[1], sys.argv[2]
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 20
creds = json.load(open(creds_file))
jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))


def get(path):
    with opener.open(base + path) as res:
        body = res.read().decode()
        timing = res.headers.get("server-timing", "")
        m = re.search(r"dur=([0-9.]+)", timing)
        return res.status, body, float(m.group(1)) if m else None


login = urllib.parse.urlencode({"username": creds["username"], "password": creds["password"]}).encode()
opener.open(base + "/console/login", data=login).read()
_, members, _ = get("/console/members?tag=" + urllib.parse.quote("企业客户"))
ids = re.findall(r"/console/members/(mem_[0-9A-Z]+)", members)
if not ids:
    _, members, _ = get("/console/members?q=" + urllib.parse.quote("王"))
    ids = re.findall(r"/console/members/(mem_[0-9A-Z]+)", members)
member = ids[0]
pages = [
    "/console/dashboard",
    "/console/dashboard?granularity=month&from=2025-12-01",
    # Recomputed on every request (the refresh link): what a snapshot costs.
    "/console/dashboard?fresh=1",
    "/console/dashboard?granularity=month&from=2025-12-01&fresh=1",
    "/console/members?q=" + urllib.parse.quote("王"),
    "/console/members/" + member,
    "/console/programme",
    "/console/coupons",
    "/console/till",
    "/console/audit",
]
# The first request of each page (cold: the analytics cache is per brand, 10 minutes).
first = {p: get(p)[2] for p in pages}
times = {p: [] for p in pages}
for _ in range(rounds):
    for p in pages:
        status, _, ms = get(p)
        assert status == 200, (p, status)
        times[p].append(ms)
print(f"{'page':60} {'first ms':>9} {'median ms':>10} {'max ms':>8}")
for p in pages:
    print(f"{p:60} {first[p]:9.1f} {statistics.median(times[p]):10.1f} {max(times[p]):8.1f}")
