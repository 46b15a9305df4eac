"""Where an experiment's tasks run: in this process, on a local process pool, or on a Dask cluster.

Every backend maps the same picklable, pure function ``fn(job, progress=None) -> result`` over
picklable jobs and calls ``on_done(job, result)`` in the driver as each finishes, so the driver
(:mod:`simulations.runner`) writes every record itself.  Results depend only on the job (its seed is
derived from the run seed and the task's position), never on the backend, the number of workers
or the order of completion.

* :class:`InProcess` — one task after another in this process (``--workers 1``).
* :class:`ProcessPool` — ``concurrent.futures.ProcessPoolExecutor`` on a ``forkserver`` (else
  ``spawn``) context; each worker limits its BLAS to ``threads`` threads (threadpoolctl and the
  usual environment variables) so that workers × threads ≤ cores, and ignores SIGINT (the driver
  handles Ctrl-C) and ends with the driver, even when the driver is killed with SIGKILL
  (:func:`die_with`: parent-death signal plus a watchdog thread).  A worker that dies (killed,
  out of memory) breaks the pool: the tasks that were running are re-run one at a time on a
  fresh pool, and the one that kills its worker again is reported through
  ``on_error(job, "worker process died ...")``; the rest of the sweep continues.
* :class:`DaskCluster` — the ``distributed`` scheduler at an address (``tcp://host:8786``), or a
  ``LocalCluster`` started for the run (``"local"``, listening on 127.0.0.1 only, no dashboard);
  ``distributed`` is imported only here.  A task
  whose worker dies more often than the scheduler allows (``KilledWorker``) goes to ``on_error``.

Ctrl-C (``KeyboardInterrupt``) in the driver stops submitting, terminates the pool's workers
(cancels the cluster's futures) and raises :class:`Interrupted` naming the jobs that had not
finished; everything passed to ``on_done`` before is kept.
"""
from __future__ import annotations

import collections
import contextlib
import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
            "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
#: ``local``, ``scheme://host[:port]`` or ``host:port``
SCHEDULER_ADDRESS = re.compile(r"local|(tcp|tls|inproc|ucx|ws|wss)://[^\s/:]+(:\d{1,5})?|[A-Za-z0-9._-]+:\d{1,5}")
INSTALL_DISTRIBUTED = "pip install 'rtrl-validation[distributed]'"
CONNECT_TIMEOUT = 10.0        # seconds to reach a Dask scheduler


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run: ``running`` holds the jobs that had not finished."""

    def __init__(self, running: list):
        super().__init__(f"interrupted with {len(running)} unfinished task(s)")
        self.running = list(running)


class SchedulerError(ValueError):
    """A Dask scheduler that cannot be used: bad address, unreachable, ``distributed`` missing."""


def cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def blas_threads(workers: int) -> int:
    """BLAS threads per worker so that ``workers × threads ≤ cores`` (at least 1)."""
    return max(1, cores() // max(1, workers))


def check_workers(workers) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    return workers


def check_address(address) -> str:
    """``address`` if it is ``"local"`` or a scheduler address; else :class:`SchedulerError`."""
    if not isinstance(address, str) or not SCHEDULER_ADDRESS.fullmatch(address):
        raise SchedulerError(f"scheduler address must be 'local', tcp://HOST:PORT or HOST:PORT, got {address!r}")
    port = address.rpartition(":")[2] if address.count(":") > (1 if "://" in address else 0) else None
    if port is not None and not 0 < int(port) < 65536:
        raise SchedulerError(f"scheduler port must be in 1..65535, got {port} in {address!r}")
    return address


# ----------------------------------------------------------------------------------------------
class InProcess:
    """Run the jobs one after another in this process (with progress callbacks)."""

    workers = 1

    def map(self, fn: Callable, jobs: Iterable, on_done: Callable, on_error: Callable,
            on_start: Callable | None = None) -> None:
        for job in jobs:
            progress = on_start(job) if on_start else None
            try:
                result = fn(job, progress)
            except KeyboardInterrupt:
                raise Interrupted([job]) from None
            on_done(job, result)

    def __repr__(self) -> str:
        return "InProcess()"


# ----------------------------------------------------------------------------------------------
_LIMITS = None


def _init_worker(threads: int, environment: dict, driver: int | None = None) -> None:
    """Process-pool worker start: ignore SIGINT, exit with the driver (:func:`die_with`), limit
    BLAS threads, and take the driver's provenance environment (same machine, interpreter and
    source tree) instead of running git and package look-ups again in every worker."""
    global _LIMITS
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if driver is not None:
        die_with(driver)
    for name in BLAS_ENV:
        os.environ[name] = str(threads)
    from threadpoolctl import threadpool_limits
    _LIMITS = threadpool_limits(limits=threads)
    from . import records
    records.environment = lambda: environment


PR_SET_PDEATHSIG = 1          # linux/prctl.h
WATCH_INTERVAL = 0.5          # seconds between the watchdog's looks at the driver
ORPHANED = 70                 # exit status of a worker whose driver is gone


def die_with(driver: int) -> None:
    """Make this worker process end when the driver process ``driver`` ends, however it ends
    (SIGKILL included): on Linux the kernel's parent-death signal (``prctl(PR_SET_PDEATHSIG,
    SIGKILL)``, for the worker's parent: the driver or its fork server, which exits with the
    driver), and everywhere a daemon watchdog thread that exits the process (status
    :data:`ORPHANED`) within :data:`WATCH_INTERVAL` seconds once the parent changes or the driver
    is gone."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass                                               # not Linux: the watchdog alone

    def watch():
        while os.getppid() == parent and alive(driver):
            time.sleep(WATCH_INTERVAL)
        os._exit(ORPHANED)
    threading.Thread(target=watch, name="driver-watchdog", daemon=True).start()


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (an ended process not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _context(preload: Iterable[str] = ()):
    """``forkserver`` where available (workers fork from a server that has imported ``preload``
    once: starting a pool is then cheap), else ``spawn``.  The preload applies when the server
    starts, i.e. with the first pool of the process."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["numpy", "threadpoolctl", __name__, *preload])
    return ctx


def _modules(fn, jobs) -> list[str]:
    """Modules the workers import to run ``fn`` on ``jobs``: of ``fn``, of each job and of its fields."""
    objects = [fn]
    for job in jobs:
        objects += [job, *getattr(job, "__dict__", {}).values()]
    names = {getattr(o, "__module__", None) or type(o).__module__ for o in objects}
    return sorted(n for n in names if n and n not in ("builtins", "__main__"))


class ProcessPool:
    """A local process pool of ``workers`` processes with ``threads`` BLAS threads each
    (default :func:`blas_threads`)."""

    def __init__(self, workers: int, threads: int | None = None):
        self.workers = check_workers(workers)
        self.threads = blas_threads(self.workers) if threads is None else check_workers(threads)

    def __repr__(self) -> str:
        return f"ProcessPool(workers={self.workers}, threads={self.threads})"

    def map(self, fn: Callable, jobs: Iterable, on_done: Callable, on_error: Callable,
            on_start: Callable | None = None) -> None:
        queue, suspects, inflight = collections.deque(jobs), collections.deque(), {}
        context = _context(_modules(fn, queue))
        from .records import environment
        initargs = (self.threads, environment(), os.getpid())
        try:
            while queue or suspects:
                pool = ProcessPoolExecutor(max_workers=min(self.workers, len(queue) + len(suspects)),
                                           mp_context=context, initializer=_init_worker, initargs=initargs)
                try:
                    self._drain(pool, fn, queue, suspects, inflight, on_done, on_error, on_start)
                except BaseException:
                    _terminate(pool)
                    raise
                pool.shutdown(wait=True)
        except KeyboardInterrupt:
            raise Interrupted(list(inflight.values())) from None

    def _drain(self, pool, fn, queue, suspects, inflight, on_done, on_error, on_start) -> None:
        """Run jobs until all are done or the pool breaks.  While ``suspects`` (jobs that were
        running when a worker died) remain, they run one at a time: one that breaks the pool alone
        killed its worker."""
        stop = isolated = None                    # stop: a task raised KeyboardInterrupt in its worker
        seen: dict = {}                           # every worker of this pool: the executor may drop a dead one
        while True:
            broken = False
            try:
                if stop is None and isolated is None:
                    if suspects:
                        if not inflight:
                            future = pool.submit(fn, suspects[0])
                            inflight[future] = isolated = suspects.popleft()
                            seen.update(pool._processes or {})
                    else:
                        while queue and len(inflight) < self.workers:
                            if on_start:
                                on_start(queue[0])
                            future = pool.submit(fn, queue[0])
                            inflight[future] = queue.popleft()
                            seen.update(pool._processes or {})
            except BrokenProcessPool:             # a worker died while we were submitting: the job stays queued
                broken = True
            if broken or not inflight:
                for future in list(inflight):
                    self._settle(pool, seen, future, inflight.pop(future), False, suspects, on_done, on_error)
                if stop is not None:
                    raise Interrupted([stop])
                return
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            outcomes = []
            for future in done:
                job = inflight.pop(future)
                outcomes.append(self._settle(pool, seen, future, job, job is isolated, suspects, on_done, on_error))
                isolated = None if job is isolated else isolated
            stop = stop or next((job for kind, job in outcomes if kind == "stop"), None)
            if any(kind == "broken" for kind, _ in outcomes):
                for future in list(inflight):          # the pool is gone: collect what finished
                    self._settle(pool, seen, future, inflight.pop(future), False, suspects, on_done, on_error)
                if stop is not None:
                    raise Interrupted([stop])
                return

    @staticmethod
    def _settle(pool, seen, future, job, alone, suspects, on_done, on_error) -> tuple[str, object]:
        """Hand a finished future's result on; ``("ok" | "broken" | "stop", job)``.  ``seen``: the
        pool's worker processes by pid, kept so that a dead worker's exit code can still be read.
        A job that broke the pool alone is reported after the pool's own thread has finished with
        its workers (``shutdown(wait=True)``): a forkserver worker's exit code is read once from a
        pipe, and a second reader at the same time gets end-of-file and records status 255, which
        had turned "killed by SIGKILL" into "exit status 255"."""
        try:
            result = future.result()
        except BrokenProcessPool:
            if alone:
                pool.shutdown(wait=True)
                on_error(job, f"worker process died while running this task ({_death(list(seen.values()))})")
            else:
                suspects.append(job)
            return "broken", job
        except KeyboardInterrupt:
            return "stop", job
        except Exception as e:  # noqa: BLE001 - e.g. a result that cannot be pickled
            on_error(job, f"{type(e).__name__}: {' '.join(str(e).split())}")
            return "ok", job
        on_done(job, result)
        return "ok", job


def _processes(pool) -> list:
    return list((getattr(pool, "_processes", None) or {}).values())


def _death(procs: list) -> str:
    """How a worker of ``procs`` (the pool's processes) died, from the exit codes (the others are
    terminated with SIGTERM)."""
    for p in procs:
        p.join(timeout=5)
    codes = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
    # the dead worker first: a signal other than the pool's own SIGTERM, then any other failure
    # (a worker terminated while it starts up may exit with status 255 instead of -SIGTERM)
    codes = ([c for c in codes if c < 0 and c != -signal.SIGTERM] or [c for c in codes if c != -signal.SIGTERM]
             or codes)
    if not codes:
        return "exit status unknown"
    code = codes[0]
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _terminate(pool) -> None:
    """Stop a pool now: cancel what is queued, terminate the workers (running tasks are lost;
    their checkpoints stay)."""
    procs = _processes(pool)
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=10)


# ----------------------------------------------------------------------------------------------
def import_distributed():
    """The ``distributed`` package, or :class:`SchedulerError` saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise SchedulerError(f"--scheduler needs Dask's 'distributed' package: {INSTALL_DISTRIBUTED}") from None
    return distributed


def _limited(fn, threads, job):
    """``fn(job)`` with BLAS limited to ``threads`` threads (``None``: the worker's own setting)."""
    if threads is None:
        return fn(job)
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=threads):
        return fn(job)


@contextlib.contextmanager
def _sigint_ignored():
    """Ignore SIGINT while child processes start (they keep ignoring it), then restore it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class DaskCluster:
    """The Dask scheduler at ``address``; ``"local"`` starts a ``LocalCluster`` of ``workers``
    single-threaded worker processes (BLAS threads from :func:`blas_threads`) for the run."""

    def __init__(self, address: str, workers: int | None = None, timeout: float | None = None):
        self.address = check_address(address)
        if address != "local" and workers is not None:
            raise SchedulerError("the number of workers of a running Dask cluster is set where its workers start")
        self.workers = check_workers(workers if workers is not None else cores()) if address == "local" else None
        self.timeout = CONNECT_TIMEOUT if timeout is None else timeout
        self.threads = blas_threads(self.workers) if address == "local" else None

    def __repr__(self) -> str:
        return f"DaskCluster({self.address!r}, workers={self.workers})"

    def _client(self, distributed):
        if self.address == "local":
            import dask
            # one task per worker thread at a time (saturation 1.0, not Dask's 1.1 that queues a
            # second): a task that kills its worker then never takes another task down with it
            with _sigint_ignored(), dask.config.set({"distributed.scheduler.worker-saturation": 1.0}):
                # every socket on 127.0.0.1; no dashboard, and the scheduler's own HTTP endpoint on
                # a free port (not 8787, which another cluster may hold)
                cluster = distributed.LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                                   host="127.0.0.1", dashboard_address=None,
                                                   scheduler_kwargs={"dashboard": False,
                                                                     "dashboard_address": "127.0.0.1:0"},
                                                   silence_logs=logging.CRITICAL)
            return cluster, distributed.Client(cluster)
        try:
            return None, distributed.Client(self.address, timeout=self.timeout)
        except (OSError, TimeoutError) as e:
            raise SchedulerError(f"cannot reach the Dask scheduler at {self.address}: "
                                 f"{' '.join(str(e).split()) or type(e).__name__}") from None

    def map(self, fn: Callable, jobs: Iterable, on_done: Callable, on_error: Callable,
            on_start: Callable | None = None) -> None:
        distributed = import_distributed()
        jobs = list(jobs)
        cluster, client = self._client(distributed)
        futures = {}
        try:
            for job in jobs:
                if on_start:
                    on_start(job)
                key = f"{getattr(job, 'name', 'job')}-{uuid.uuid4().hex[:12]}"
                futures[client.submit(_limited, fn, self.threads, job, key=key, pure=False)] = job
            for future in distributed.as_completed(list(futures)):
                job = futures.pop(future)
                try:
                    result = future.result()
                except distributed.KilledWorker as e:            # first sentence: "... on N different workers,
                    first = " ".join(str(e).split()).split(". ")[0]  # but all those workers died while running it"
                    on_error(job, f"worker process died while running this task (KilledWorker: {first})")
                    continue
                except Exception as e:  # noqa: BLE001
                    on_error(job, f"{type(e).__name__}: {' '.join(str(e).split())}")
                    continue
                on_done(job, result)
        except KeyboardInterrupt:
            client.cancel(list(futures))
            raise Interrupted(list(futures.values())) from None
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def make_executor(workers: int | None = None, scheduler: str | None = None):
    """The backend for ``--workers`` / ``--scheduler``: Dask when ``scheduler`` is given, else a
    process pool of ``workers`` (default: the number of cores), else in-process for one worker."""
    if scheduler is not None:
        return DaskCluster(scheduler, workers)
    workers = cores() if workers is None else check_workers(workers)
    return InProcess() if workers == 1 else ProcessPool(workers)
