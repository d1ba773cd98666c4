#!/usr/bin/env python3
"""Write the bulk-import benchmark's files (docs/benchmarks.md, "Bulk import"):
members.csv (100,000 members) and orders.csv (100,000 orders of two lines each), deterministic.

    python3 bench/import_files.py OUT_DIR [MEMBERS ORDERS]
"""
import random
import sys
from pathlib import Path

out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
members = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
orders = int(sys.argv[3]) if len(sys.argv) > 3 else 100_000
out.mkdir(parents=True, exist_ok=True)
random.seed(1)
with open(out / "members.csv", "w", encoding="utf-8") as f:
    f.write("external_id,phone,name,birthday,gender,city,channel,store,tags\n")
    for i in range(members):
        f.write(
            f"C{i:07},139{i:08},会员{i},19{random.randint(60, 99)}-{random.randint(1, 12):02}-"
            f"{random.randint(1, 28):02},{random.choice('男女')},上海,"
            f"{random.choice(['小程序', '门店', 'app'])},,tag{i % 7}\n"
        )
random.seed(1)
with open(out / "orders.csv", "w", encoding="utf-8") as f:
    f.write("order_id,member_external_id,occurred_at,sku,category,quantity,amount\n")
    for o in range(orders):
        m = random.randint(0, members - 1)
        when = (
            f"2026-{random.randint(1, 10):02}-{random.randint(1, 28):02} "
            f"{random.randint(9, 21):02}:{random.randint(0, 59):02}"
        )
        for _ in range(2):
            f.write(
                f"T{o:08},C{m:07},{when},SKU{random.randint(1, 500)},cat{random.randint(1, 20)},1,"
                f"{random.randint(10, 500)}.{random.randint(0, 99):02}\n"
            )
