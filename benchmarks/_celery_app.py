"""The Celery reference for benchmarks/throughput.py: a no-op task on a Redis broker and result backend.

The worker is started by the benchmark (``celery -A _celery_app worker --pool prefork --concurrency 2``)
with this directory as its working directory; ``OVERLORD_BENCH_REDIS`` picks the Redis URL.
"""

from __future__ import annotations

import os

from celery import Celery

REDIS_URL = os.environ.get("OVERLORD_BENCH_REDIS", "redis://127.0.0.1:6379/15")
QUEUE = "overlord-throughput-bench"

app = Celery("overlord_bench", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_default_queue=QUEUE,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    result_expires=600,
)


@app.task(name="noop")
def noop(run_time_ms: int = 0) -> str:
    if run_time_ms:
        import time

        time.sleep(run_time_ms / 1000)
    return "SUCCESS"
