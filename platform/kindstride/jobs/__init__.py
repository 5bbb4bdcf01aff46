"""Background jobs: rq on Redis when KINDSTRIDE_REDIS_URL is set, the same functions in-process otherwise.

A job is a plain function that takes ids and strings. It is queued with `enqueue` inside a tenant scope,
dispatched only once the transaction that asked for it commits, and run by `run_job` in a fresh app
context inside the same tenant scope.
"""

from kindstride.jobs.queue import enqueue

__all__ = ["enqueue"]
