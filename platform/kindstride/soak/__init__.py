"""`kindstride soak`: a repeatable soak test. For N minutes (bounded, 127.0.0.1 only) virtual people browse,
register, upload activities, donate through VNPay's test double and administer, against gunicorn, rq workers,
PostgreSQL and Redis; the report gives requests, errors by kind, latency percentiles, the memory of the serving
processes over time, and a consistency check at the end (no activity or money lost or doubled, the ledger
balanced, every total equal to a recomputation). deploy/soak/REPORT.md holds a run's report."""
