"""A real Celery worker process consumes the real Redis broker."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from careteam.tasks import ping
from tests.processes import task_result, worker_database_url

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def celery_worker_process(transactional_db, settings):
    """Start `celery -A config worker` against the same broker and test database."""

    env = dict(os.environ)
    env["DATABASE_URL"] = worker_database_url()
    env["DEBUG"] = "true"
    env["CELERY_RESULT_BACKEND"] = settings.REDIS_URL
    queue = f"test-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            queue,
            "-c",
            "1",
            "-P",
            "solo",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
            "-l",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield queue
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.celery_worker
def test_ping_runs_on_a_real_worker_through_redis(celery_worker_process, settings):
    token = uuid.uuid4().hex
    result = ping.apply_async(args=[token], queue=celery_worker_process, ignore_result=False)
    assert task_result(result.id, settings.REDIS_URL) == {"pong": token, "db": True}
