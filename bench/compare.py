"""Runs bench/compare.sh's measurements: each tool in its own process under /usr/bin/time (wall
time and peak memory), checks that every tool found the same answer, prints a table with ratios.

Called with a subcommand, it is one of the measured processes (pandas, DuckDB, lifetimes)."""

import argparse
import json
import subprocess
import sys
import time

AS_OF = "2026-01-01"
CAL_END = "2025-09-28"  # a Sunday: lifetimes and we then cut the same weeks

SEGMENT_ORDER = ["important_value", "important_development", "important_retain", "important_win_back",
                 "general_value", "general_development", "general_retain", "general_win_back"]


def segments_of(r_high, f_high, m_high):
    import numpy as np
    names = np.array(SEGMENT_ORDER)
    # Same order as huiyuan_analytics::rfm::Segment: M first, then R, then F.
    index = (~m_high).astype(int) * 4 + (~r_high).astype(int) * 2 + (~f_high).astype(int)
    return names[index]


def rfm_pandas(path, as_of):
    import pandas as pd
    t0 = time.perf_counter()
    df = pd.read_csv(path, usecols=["member_id", "date", "amount"], parse_dates=["date"])
    df = df[df["date"] <= pd.Timestamp(as_of)]
    # Whole cents: float sums of the amounts tie and untie members at random, and change scores.
    df["amount"] = (df["amount"] * 100).round().astype("int64")
    g = df.groupby("member_id").agg(last=("date", "max"), frequency=("date", "size"), monetary=("amount", "sum"))
    g["recency"] = (pd.Timestamp(as_of) - g["last"]).dt.days
    n = len(g)
    # Our tie rule: 1 + floor(5 * members strictly worse / n).
    g["f"] = 1 + (5 * (g["frequency"].rank(method="min") - 1) // n).astype(int)
    g["m"] = 1 + (5 * (g["monetary"].rank(method="min") - 1) // n).astype(int)
    g["r"] = 1 + (5 * (g["recency"].rank(method="min", ascending=False) - 1) // n).astype(int)
    g["segment"] = segments_of(g["recency"] <= g["recency"].mean(), g["frequency"] >= g["frequency"].mean(),
                               g["monetary"] >= g["monetary"].mean())
    g["scores"] = g["r"] + g["f"] + g["m"]
    per = g.groupby("segment").agg(n=("scores", "size"), s=("scores", "sum"))
    result = {seg: [int(row.n), int(row.s)] for seg, row in per.iterrows()}
    return time.perf_counter() - t0, result


def rfm_duckdb(path, as_of):
    import duckdb
    t0 = time.perf_counter()
    con = duckdb.connect()
    rows = con.execute(f"""
        WITH t AS (
            SELECT member_id, max(date) AS last, count(*) AS f, sum(amount) AS m
            FROM read_csv('{path}', header = true,
                          columns = {{'member_id': 'VARCHAR', 'date': 'DATE', 'amount': 'DECIMAL(18,2)'}})
            WHERE date <= DATE '{as_of}' GROUP BY member_id),
        s AS (SELECT *, DATE '{as_of}' - last AS r FROM t),
        means AS (SELECT avg(r) AS ar, avg(f) AS af, avg(m) AS am FROM s),
        scored AS (
            SELECT s.*,
                   1 + (5 * (rank() OVER (ORDER BY r DESC) - 1)) // count(*) OVER () AS rs,
                   1 + (5 * (rank() OVER (ORDER BY f) - 1)) // count(*) OVER () AS fs,
                   1 + (5 * (rank() OVER (ORDER BY m) - 1)) // count(*) OVER () AS ms,
                   (r <= ar) AS rh, (f >= af) AS fh, (m >= am) AS mh
            FROM s, means)
        SELECT (CASE WHEN mh THEN 0 ELSE 4 END) + (CASE WHEN rh THEN 0 ELSE 2 END) + (CASE WHEN fh THEN 0 ELSE 1 END)
               AS seg, count(*), sum(rs + fs + ms)
        FROM scored GROUP BY seg""").fetchall()
    result = {SEGMENT_ORDER[seg]: [int(n), int(scores)] for seg, n, scores in rows}
    return time.perf_counter() - t0, result


def lifetimes_summary(path, end, out):
    import pandas as pd
    from lifetimes.utils import summary_data_from_transaction_data
    t0 = time.perf_counter()
    tx = pd.read_csv(path, parse_dates=["date"])
    s = summary_data_from_transaction_data(tx, "member_id", "date", monetary_value_col="amount",
                                           observation_period_end=end, freq="W")
    s.index.name = "member_id"
    s.to_csv(out)
    return time.perf_counter() - t0, {"customers": len(s)}


def lifetimes_fit(summary):
    import pandas as pd
    from lifetimes import BetaGeoFitter
    d = pd.read_csv(summary)
    if "x" in d.columns:
        d = d.rename(columns={"x": "frequency", "t_x": "recency"})
    t0 = time.perf_counter()
    f = BetaGeoFitter(penalizer_coef=0.0).fit(d["frequency"], d["recency"], d["T"])
    elapsed = time.perf_counter() - t0
    return elapsed, {k: float(v) for k, v in f.params_.items()}


def timed(cmd):
    """Runs cmd under /usr/bin/time; returns (wall seconds, peak KiB, stdout, stderr)."""
    p = subprocess.run(["/usr/bin/time", "-f", "__TIME__ %e %M"] + cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr}")
    lines = p.stderr.splitlines()
    wall, kib = next(l for l in lines if l.startswith("__TIME__")).split()[1:]
    return float(wall), int(kib), p.stdout, "\n".join(l for l in lines if not l.startswith("__TIME__"))


def me(*args):
    return [sys.executable, __file__] + list(args)


def main():
    if len(sys.argv) > 1 and sys.argv[1] in ("rfm-pandas", "rfm-duckdb", "summary", "fit"):
        what, args = sys.argv[1], sys.argv[2:]
        elapsed, result = {"rfm-pandas": rfm_pandas, "rfm-duckdb": rfm_duckdb, "summary": lifetimes_summary,
                           "fit": lifetimes_fit}[what](*args)
        print(json.dumps({"inner": elapsed, "result": result}))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--transactions", required=True)
    ap.add_argument("--cdnow", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each RFM tool; the median is reported")
    a = ap.parse_args()
    rows = []

    # RFM, each tool run a.repeat times in turn (the median is kept: the machine is shared).
    # Ours is timed without --json (like the others, it scores every member and prints the
    # segments); the answer is checked from a --json run: every tool must find the same members
    # and the same sum of R+F+M scores in each segment.
    _, _, out, _ = timed([a.bin, "analytics", "rfm", "--input", a.transactions, "--as-of", AS_OF, "--json"])
    report = json.loads(out)
    ours = {}
    for m in report["members"]:
        n, total = ours.get(m["segment"], [0, 0])
        ours[m["segment"]] = [n + 1, total + m["r"] + m["f"] + m["m"]]
    del report, out
    runs = {"huiyuan": [], "pandas": [], "duckdb": []}
    for _ in range(a.repeat):
        wall, kib, _, _ = timed([a.bin, "analytics", "rfm", "--input", a.transactions, "--as-of", AS_OF])
        runs["huiyuan"].append((wall, None, kib))
        for tool in ("rfm-pandas", "rfm-duckdb"):
            w, k, out, _ = timed(me(tool, a.transactions, AS_OF))
            r = json.loads(out)
            if r["result"] != ours:
                sys.exit(f"{tool} found other segments or scores: {r['result']} vs ours {ours}")
            runs[tool[4:]].append((w, r["inner"], k))
    for tool, measured in runs.items():
        walls = sorted(m[0] for m in measured)
        inners = sorted(m[1] for m in measured if m[1] is not None)
        rows.append(("RFM, 10M transactions", tool, walls[len(walls) // 2],
                     inners[len(inners) // 2] if inners else None, max(m[2] for m in measured)))

    # BG/NBD on CDNOW.
    _, kib, _, err = timed([a.bin, "analytics", "clv", "--summary", a.cdnow, "--timings"])
    fit_ms = lap(err, "BG/NBD fitted") - lap(err, "read and summarised")
    rows.append(("BG/NBD fit, CDNOW (2,357)", "huiyuan", fit_ms / 1e3, None, kib))
    w, k, out, _ = timed(me("fit", a.cdnow))
    rows.append(("BG/NBD fit, CDNOW (2,357)", "lifetimes", w, json.loads(out)["inner"], k))

    # BG/NBD on the 1M-member summary (made by lifetimes, read by both).
    summary = f"{a.work}/summary.csv"
    _, kib, _, err = timed([a.bin, "analytics", "clv", "--input", a.transactions, "--calibration-end", CAL_END,
                            "--timings"])
    rows.append(("summary from 10M transactions", "huiyuan", lap(err, "read and summarised") / 1e3, None, kib))
    w, k, out, _ = timed(me("summary", a.transactions, CAL_END, summary))
    rows.append(("summary from 10M transactions", "lifetimes", w, json.loads(out)["inner"], k))
    _, kib, _, err = timed([a.bin, "analytics", "clv", "--summary", summary, "--timings"])
    fit_ms = lap(err, "BG/NBD fitted") - lap(err, "read and summarised")
    rows.append(("BG/NBD fit, 1M customers", "huiyuan", fit_ms / 1e3, None, kib))
    w, k, out, _ = timed(me("fit", summary))
    rows.append(("BG/NBD fit, 1M customers", "lifetimes", w, json.loads(out)["inner"], k))

    print("| task | tool | wall s | compute s | peak MiB | their compute ÷ ours |")
    print("|---|---|---|---|---|---|")
    ours_by_task = {}
    for task, tool, wall, inner, kib in rows:
        if tool == "huiyuan":
            ours_by_task[task] = wall
        theirs = inner if inner is not None else wall
        ratio = "" if tool == "huiyuan" else f"{theirs / ours_by_task[task]:.1f}×"
        print(f"| {task} | {tool} | {wall:.3f} | {'' if inner is None else f'{inner:.3f}'} | {kib / 1024:.0f} | {ratio} |")
    print("\nOurs: the whole process for RFM (read, score, print the segments); from --timings for the rest.")
    print("Theirs: compute measured inside the process (after imports); wall includes interpreter start.")


def lap(stderr, label):
    for line in stderr.splitlines():
        if line.startswith(label + ":"):
            return float(line.split(":")[1].split()[0])
    sys.exit(f"no '{label}' in:\n{stderr}")


if __name__ == "__main__":
    main()
