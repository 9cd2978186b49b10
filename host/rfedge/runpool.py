"""Independent ``rfedge.train`` runs in parallel worker processes.

The runs of an evaluation share nothing but the dataset and its cached features. TensorFlow
gains little from a second thread on these small models (the same CPU seconds, hardly less
wall time), so N single-threaded worker processes train about N runs in the time one
two-threaded process trains one. Each worker is a plain ``python -m rfedge.runpool`` child that
reads one JSON task per line on stdin, runs it and answers one JSON line; it keeps TensorFlow
and the feature store loaded between tasks. Its stdout and stderr (TensorFlow's own chatter
included) go to the current run's ``train.log``. Subprocesses rather than multiprocessing: they
never re-import the caller's main module and never fork a process that holds native threads.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import traceback

from rfedge.errors import RfedgeError

THREADS_ENV = "RFEDGE_TF_THREADS"


def run_tasks(tasks: list[dict], jobs: int, threads_per_job: int, on_event) -> None:
    """Run ``tasks`` (each ``{"kwargs": train keyword arguments, "log": path, "cache_dir": path,
    ...}``) on ``jobs`` workers. ``on_event(kind, task, payload)`` is called from this thread:
    ("start", task, worker index), then ("done", task, metrics) or ("failed", task, message).
    After the first failure no new task starts; the running ones finish, then RfedgeError."""
    todo: queue.Queue = queue.Queue()
    for t in tasks:
        todo.put(t)
    events: queue.Queue = queue.Queue()
    stop = threading.Event()
    env = dict(os.environ, **{THREADS_ENV: str(max(1, int(threads_per_job))), "TF_CPP_MIN_LOG_LEVEL": "2"})
    procs = [subprocess.Popen([sys.executable, "-m", "rfedge.runpool"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(max(1, min(int(jobs), len(tasks))))]

    def drive(w: int, p: subprocess.Popen):
        while not stop.is_set():
            try:
                task = todo.get_nowait()
            except queue.Empty:
                break
            events.put(("start", task, w))
            try:
                p.stdin.write(json.dumps(task) + "\n")
                p.stdin.flush()
                line = p.stdout.readline()
            except (BrokenPipeError, OSError):
                line = ""
            if not line:
                events.put(("failed", task, f"worker {w} exited (code {p.poll()}); see {task['log']}"))
                break
            reply = json.loads(line)
            events.put(("done", task, reply["metrics"]) if reply["ok"] else ("failed", task, reply["error"]))
        events.put(("idle", None, w))

    drivers = [threading.Thread(target=drive, args=(w, p), daemon=True) for w, p in enumerate(procs)]
    failures = []
    try:
        for d in drivers:
            d.start()
        idle = 0
        while idle < len(drivers):
            kind, task, payload = events.get()
            if kind == "idle":
                idle += 1
                continue
            if kind == "failed":
                failures.append(payload)
                stop.set()
            on_event(kind, task, payload)
    except BaseException:
        stop.set()
        for p in procs:
            p.kill()
        raise
    finally:
        for p in procs:
            if p.stdin and not p.stdin.closed:
                try:
                    p.stdin.close()
                except OSError:
                    pass
        for p in procs:
            p.wait()
    if failures:
        raise RfedgeError(failures[0])


def _serve() -> None:
    """The worker loop: one task per stdin line, one JSON answer per stdout line."""
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    from rfedge.data.dataset import Dataset
    from rfedge.featcache import FeatureStore
    from rfedge.train import train

    stores: dict = {}
    for line in sys.stdin:
        task = json.loads(line)
        kw = task["kwargs"]
        name = " ".join(map(str, task.get("job") or [kw.get("model", "train")]))
        with open(task["log"], "a") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                key = (kw["data_dir"], task.get("cache_dir"))
                if key not in stores:
                    stores[key] = FeatureStore(Dataset.open(kw["data_dir"]), cache_dir=task.get("cache_dir"), stream=log)
                stores[key].stream = log
                reply = {"ok": True, "metrics": train(**kw, stream=log, features=stores[key])}
            except RfedgeError as e:
                reply = {"ok": False, "error": f"{name}: {e}"}
            except Exception:
                log.write(traceback.format_exc())
                reply = {"ok": False, "error": f"{name}: {traceback.format_exc().strip().splitlines()[-1]} "
                                               f"(see {task['log']})"}
            sys.stdout.flush()
            sys.stderr.flush()
        answers.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    _serve()
