"""`kindstride bench`: performance at the scale of the largest real event, as ratios against this machine's
own limits (see deploy/benchmarks/REPORT.md)."""
