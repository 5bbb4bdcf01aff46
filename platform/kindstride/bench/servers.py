"""The servers a bench run starts as subprocesses, as deploy/ runs them: gunicorn (2 sync workers) and
`kindstride worker` (rq), and the peak resident memory of their processes, read from /proc."""

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from kindstride.bench.environment import free_port

BIN = Path(sys.executable).parent


class ServerError(RuntimeError):
    pass


def _children(pid):
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        found = []
        for task in tasks:
            found += [int(c) for c in (task / "children").read_text().split()]
        return found
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []


def _status_kb(pid, field):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


class MemoryWatch:
    """Peak RSS (MB) per role, sampled every few tens of milliseconds (rq's work horses live for one job
    only, so their peak is caught by sampling; long-lived processes also report their kernel high-water mark)."""

    def __init__(self, interval=0.05):
        self.interval = interval
        self.roles = {}  # role -> (function returning pids)
        self.peaks = {}  # role -> peak kB
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, role, pids):
        self.roles[role] = pids
        self.peaks.setdefault(role, 0)

    def start(self):
        self._thread.start()
        return self

    def sample(self):
        for role, pids in list(self.roles.items()):
            for pid in pids():
                for field in ("VmRSS", "VmHWM"):
                    value = _status_kb(pid, field)
                    if value:
                        self.peaks[role] = max(self.peaks[role], value)

    def _run(self):
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self):
        self.sample()
        self._stop.set()
        self._thread.join()

    def peak_mb(self, role):
        return round(self.peaks.get(role, 0) / 1024, 1)


class Gunicorn:
    def __init__(self, spec, env, workers=2, port=None, threads=1, log=None):
        self.port = port or free_port()
        command = [str(BIN / "gunicorn"), spec, "-w", str(workers), "-b", f"127.0.0.1:{self.port}",
                   "--backlog", "2048", "--timeout", "120", "--graceful-timeout", "5", "--no-control-socket"]
        if threads > 1:
            command += ["--threads", str(threads)]
        self.log = log
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                        stderr=log or subprocess.DEVNULL, cwd=env.get("KINDSTRIDE_BENCH_CWD"))
        self.workers = workers

    def wait_ready(self, probe, timeout=90):
        """Until every worker has loaded the app: batches of concurrent requests for `probe` (request bytes)
        all answer, and quickly (a worker still importing the app answers seconds late)."""
        from kindstride.bench import load

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"gunicorn exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
            except OSError:
                time.sleep(0.1)
                continue
            result = load.run(self.port, lambda c, n: probe if n < 4 else None, self.workers * 2, 30,
                              expect=range(200, 500))
            if result.requests and not result.errors and max(result.latencies_ms) < 300:
                return self
            time.sleep(0.1)
        raise ServerError("gunicorn did not start")

    def worker_pids(self):
        return _children(self.process.pid)

    def stop(self):
        _stop(self.process)


class RqWorkers:
    """`kindstride worker` processes, each forking a work horse per job as in production (or, in_process,
    `python -m kindstride.bench.worker`: the same jobs run in the worker's own process)."""

    def __init__(self, count, env, log=None, in_process=False):
        command = ([sys.executable, "-m", "kindstride.bench.worker"] if in_process
                   else [str(BIN / "kindstride"), "worker"])
        self.processes = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                           stderr=log or subprocess.DEVNULL) for _ in range(count)]

    def pids(self):
        pids = []
        for process in self.processes:
            if process.poll() is None:
                pids.append(process.pid)
                pids += _children(process.pid)
        return pids

    def wait_registered(self, redis, timeout=120):
        """Until every worker has loaded the app and registered with rq."""
        from rq import Worker

        wanted = {process.pid for process in self.processes}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if wanted <= {worker.pid for worker in Worker.all(connection=redis)}:
                return
            time.sleep(0.2)
        raise ServerError("rq workers did not register")

    def alive(self):
        return all(process.poll() is None for process in self.processes)

    def stop(self):
        for process in self.processes:
            _stop(process)


def _stop(process, timeout=15):
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def machine():
    """nproc, memory and CPU model, as the report shows them."""
    info = {"nproc": os.cpu_count()}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


class CpuClock:
    """CPU seconds over an interval: this process, its children reaped meanwhile (an import's forked workers),
    and the whole machine (busy time in /proc/stat), so the rest is mostly the PostgreSQL backends."""

    def __init__(self):
        self.started = self._read()

    @staticmethod
    def _read():
        times = os.times()
        try:
            ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
            # user, nice, system, irq, softirq: not idle or I/O wait, nor the time the hypervisor took (steal)
            busy = sum(ticks[i] for i in (0, 1, 2, 5, 6)) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            busy = None
        return time.perf_counter(), times.user + times.system, times.children_user + times.children_system, busy

    def split(self):
        """{parent, workers, rest, cores_busy}: CPU seconds since the clock started, and the cores they kept busy
        on average (rest and cores_busy are None where /proc/stat cannot be read)."""
        wall, own, children, busy = self._read()
        started_wall, started_own, started_children, started_busy = self.started
        own, children = own - started_own, children - started_children
        figures = {"parent": round(own, 1), "workers": round(children, 1), "rest": None, "cores_busy": None}
        if busy is not None and started_busy is not None:
            busy -= started_busy
            figures["rest"] = round(max(0.0, busy - own - children), 1)
            figures["cores_busy"] = round(busy / (wall - started_wall), 2)
        return figures


def load_average():
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None
