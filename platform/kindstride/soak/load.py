"""The soak's mixed load: virtual people browsing, registering, uploading, donating and administering, each
request timed and classified, and the memory of the serving processes sampled from /proc."""

import random
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests

# action -> weight; browse dominates as it does on a real event's site.
MIX = {"browse": 45, "upload": 22, "register": 4, "donate": 9, "admin": 10, "mine": 10}
BROWSE = ("/", "/challenges/run", "/challenges/run/leaderboard", "/challenges/run/leaderboard?page=2",
          "/challenges/run/teams", "/challenges/run/donate", "/api/v1/challenges/run/leaderboard",
          "/api/v1/challenges/run/leaderboard/teams", "/api/v1/challenges/run/totals",
          "/api/v1/challenges/run/money", "/api/v1/challenges/run/donations", "/api/v1/challenges")
ADMIN_PAGES = ("/admin/challenges/", "/admin/challenges/run/review", "/admin/money/", "/admin/members/",
               "/admin/money/payments")


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latencies = defaultdict(list)  # action -> [seconds]
        self.statuses = defaultdict(Counter)  # action -> status -> count
        self.errors = Counter()  # kind -> count
        self.examples = {}  # kind -> an example
        self.requests = 0
        self.per_minute = Counter()

    def record(self, action, status, seconds, started, error=None, detail=""):
        with self.lock:
            self.requests += 1
            self.latencies[action].append(seconds)
            self.statuses[action][status] += 1
            self.per_minute[int(started // 60)] += 1
            if error:
                self.errors[error] += 1
                self.examples.setdefault(error, detail[:300])


def percentile(values, fraction):
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def _status_kb(pid, field="VmRSS"):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def children(pid):
    found = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return found


def gunicorn_pids():
    """Gunicorn worker processes on this machine (for a soak against a server it did not start)."""
    workers = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            parent_cmdline = Path(f"/proc/{parent}/cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError, IndexError):
            continue
        if b"gunicorn" in cmdline and b"gunicorn" in parent_cmdline:
            workers.append(int(entry.name))
    return workers


class MemorySampler:
    """RSS of the web workers and rq workers every `interval` seconds: (seconds since start, role, pid, kB)."""

    def __init__(self, roles, interval=5.0):
        self.roles = roles  # role -> function returning pids
        self.interval = interval
        self.samples = []
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="soak-memory")

    def start(self):
        self._thread.start()
        return self

    def sample(self):
        now = time.monotonic() - self.started
        for role, pids in self.roles.items():
            for pid in pids():
                kb = _status_kb(pid)
                if kb:
                    self.samples.append((now, role, pid, kb))

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self._thread.join()
        self.sample()


def _gpx(start, km, pace_s):
    step_s = 10
    metres = 1000 / pace_s * step_s
    points = []
    for index in range(int(km * 1000 / metres) + 1):
        moment = (start + timedelta(seconds=index * step_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
        points.append(f'<trkpt lat="{10.7626 + index * metres / 111_195:.7f}" lon="106.6602"><time>{moment}</time>'
                      "</trkpt>")
    return ('<?xml version="1.0" encoding="UTF-8"?><gpx version="1.1" creator="Garmin Forerunner 245" '
            'xmlns="http://www.topografix.com/GPX/1/1"><trk><type>running</type><trkseg>'
            + "".join(points) + "</trkseg></trk></gpx>").encode()


class Person(threading.Thread):
    """One virtual person's loop: pick an action by MIX, do it, think a moment, until the deadline."""

    def __init__(self, number, driver):
        super().__init__(daemon=True, name=f"soak-person-{number}")
        self.rng = random.Random(driver.seed * 1000 + number)
        self.driver = driver
        self.session = requests.Session()

    def run(self):
        actions, weights = zip(*MIX.items(), strict=True)
        while not self.driver.done():
            action = self.rng.choices(actions, weights)[0]
            tenant = self.rng.choice(self.driver.tenants)
            try:
                getattr(self, action)(tenant)
            except Exception as error:  # (recorded, never fatal: the soak reports it)
                self.driver.stats.record(action, "exception", 0.0, time.monotonic() - self.driver.started,
                                         error=f"driver {type(error).__name__}", detail=str(error))
            time.sleep(self.rng.uniform(*self.driver.think))

    # -- one request --------------------------------------------------------------------------------------
    def call(self, action, tenant, method, path, expect=(200,), **kwargs):
        headers = {"Host": f"{tenant.host}:{self.driver.port}", **kwargs.pop("headers", {})}
        started = time.monotonic()
        offset = started - self.driver.started
        try:
            response = self.session.request(method, f"{self.driver.base_url}{path}", headers=headers, timeout=60,
                                            allow_redirects=False, **kwargs)
        except requests.Timeout as error:
            self.driver.stats.record(action, "timeout", time.monotonic() - started, offset, error="timeout",
                                     detail=f"{method} {path}: {error}")
            return None
        except requests.RequestException as error:
            self.driver.stats.record(action, "connection", time.monotonic() - started, offset,
                                     error="connection error", detail=f"{method} {path}: {error}")
            return None
        seconds = time.monotonic() - started
        error = None
        if response.status_code >= 500:
            error = f"HTTP {response.status_code}"
        elif response.status_code not in expect:
            error = f"unexpected HTTP {response.status_code} ({action})"
        self.driver.stats.record(action, response.status_code, seconds, offset, error=error,
                                 detail=f"{method} {path}: {response.text[:200]}")
        return response

    def follow(self, action, tenant, location, expect=(200, 302, 303)):
        """A redirect to one of our own pages (a gateway sends the payer back): reached through 127.0.0.1."""
        parts = urlsplit(location)
        path = urlunsplit(("", "", parts.path, parts.query, ""))
        return self.call(action, tenant, "GET", path, expect=expect)

    # -- actions ------------------------------------------------------------------------------------------
    def browse(self, tenant):
        path = self.rng.choice(BROWSE)
        if self.rng.random() < 0.2 and tenant.team_ids:
            path = f"/challenges/run/teams/{self.rng.choice(tenant.team_ids)}"
        elif self.rng.random() < 0.1 and tenant.registration_ids:
            path = f"/challenges/run/participants/{self.rng.choice(tenant.registration_ids)}"
        self.call("browse", tenant, "GET", path)

    def _runner(self, tenant, registered=True):
        pool = [(user, token) for user, token in tenant.runner_tokens if (user in tenant.registered) == registered]
        return self.rng.choice(pool) if pool else None

    def upload(self, tenant):
        runner = self._runner(tenant)
        if runner is None:
            return
        user, token = runner
        auth = {"Authorization": f"Bearer {token}"}
        number = self.driver.next_number(user)
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1, minutes=37 * number)
        km, pace = self.rng.choice([(3, 330), (5, 300), (8, 360), (0.6, 320), (10, 150)])
        expected = self.driver.expected[tenant.slug]
        if self.rng.random() < 0.5:
            body = {"sport": "run", "start": start.isoformat(), "moving_s": km * pace, "distance_m": km * 1000,
                    "has_gps": True, "split_paces_s_per_km": [pace] * int(km)}
            response = self.call("upload", tenant, "POST", "/api/v1/activities", expect=(201,), json=body,
                                 headers=auth)
            if response is not None and response.status_code == 201:
                expected.activity_ids.add(response.json()["id"])
                if self.rng.random() < 0.15:  # the app's retry after a timeout: the same activity again
                    again = self.call("upload", tenant, "POST", "/api/v1/activities", expect=(201,), json=body,
                                      headers=auth)
                    if again is not None and again.status_code == 201 and again.json()["id"] != response.json()["id"]:
                        self.driver.stats.record("upload", "doubled", 0.0, 0.0, error="an activity sent twice was "
                                                 "stored twice", detail=str(body))
        else:
            data = _gpx(start, km, pace)
            response = self.call("upload", tenant, "POST", "/api/v1/activities/upload", files={
                "files": (f"run-{user}-{number}.gpx", data, "application/gpx+xml")}, headers=auth)
            if response is not None and response.status_code == 200:
                expected.activity_ids.update(item["activity_id"] for item in response.json() if item["activity_id"])

    def register(self, tenant):
        runner = self._runner(tenant, registered=False)
        if runner is None:
            runner = self._runner(tenant)
            if runner is None:
                return
            user, token = runner
            self.call("register", tenant, "PATCH", "/api/v1/challenges/run/registration", expect=(200,),
                      json={"team_id": self.rng.choice(tenant.team_ids)},
                      headers={"Authorization": f"Bearer {token}"})
            return
        user, token = runner
        with self.driver.lock:
            if user in tenant.registered:
                return
            tenant.registered.add(user)
        response = self.call("register", tenant, "POST", "/api/v1/challenges/run/registrations", expect=(201,),
                             json={"team_id": self.rng.choice(tenant.team_ids)},
                             headers={"Authorization": f"Bearer {token}"})
        if response is not None and response.status_code == 201:
            tenant.registration_ids.append(response.json()["id"])

    def donate(self, tenant):
        if tenant.gateway is None or self.driver.vnpay is None:
            return self.browse(tenant)
        key = f"soak-{self.driver.seed}-{threading.get_ident()}-{time.monotonic_ns()}"
        body = {"amount": tenant.donation_amount * self.rng.choice([1, 2, 4]), "currency": tenant.currency,
                "gateway": "vnpay", "donor_name": "Soak donor", "donor_email": "donor@soak.example",
                "message": "Keep going!", "idempotency_key": key}
        started = self.call("donate", tenant, "POST", "/api/v1/challenges/run/donations", expect=(201,), json=body)
        if started is None or started.status_code != 201:
            return None
        reference = started.json()["reference"]
        if self.rng.random() < 0.1:  # a double click: the same donation, not a second one
            again = self.call("donate", tenant, "POST", "/api/v1/challenges/run/donations", expect=(201,), json=body)
            if again is not None and again.status_code == 201 and again.json()["reference"] != reference:
                self.driver.stats.record("donate", "doubled", 0.0, 0.0, error="a double click made two payments",
                                         detail=reference)
        gateway = self.driver.vnpay
        page = requests.get(started.json()["redirect_url"], allow_redirects=False, timeout=30)
        txn_ref = urlsplit(started.json()["redirect_url"]).query.split("vnp_TxnRef=")[1].split("&")[0]
        self.driver.expected[tenant.slug].payments[reference] = (txn_ref, body["amount"])
        if page.status_code != 302:
            self.driver.stats.record("donate", page.status_code, 0.0, time.monotonic() - self.driver.started,
                                     error="the gateway refused the payment", detail=page.text[:200])
            return None
        if self.rng.random() < 0.8:
            self.follow("donate", tenant, page.headers["Location"], expect=(302,))  # the payer comes back
        if self.rng.random() < 0.6:  # VNPay's IPN, sometimes twice
            notify = f"{self.driver.base_url}/payments/vnpay/webhook"
            for _ in range(self.rng.choice([1, 1, 2])):
                started_at = time.monotonic()
                answer = requests.get(notify, params=gateway.ipn_params(txn_ref), timeout=30,
                                      headers={"Host": f"{tenant.host}:{self.driver.port}"})
                code = answer.json().get("RspCode") if answer.status_code == 200 else None
                self.driver.stats.record("donate", answer.status_code, time.monotonic() - started_at,
                                         started_at - self.driver.started,
                                         error=None if code in ("00", "02") else f"IPN answered {answer.status_code}"
                                         f" {code}", detail=answer.text[:200])
        return None

    def admin(self, tenant):
        if self.rng.random() < 0.6:
            cookie = self.driver.admin_cookies.get(tenant.slug)
            if cookie:
                self.call("admin", tenant, "GET", self.rng.choice(ADMIN_PAGES),
                          headers={"Cookie": f"kindstride_session={cookie}"})
            return
        auth = {"Authorization": f"Bearer {tenant.admin_token}"}
        queue = self.call("admin", tenant, "GET", "/api/v1/challenges/run/review-queue", headers=auth)
        if queue is not None and queue.status_code == 200 and queue.json():
            item = self.rng.choice(queue.json())
            # Two moderators may take the same item: the second is told it is decided already (422).
            self.call("admin", tenant, "POST", f"/api/v1/results/{item['result_id']}/decision", expect=(200, 422),
                      json={"decision": self.rng.choice(["accepted", "rejected"]), "comment": "soak review"},
                      headers=auth)

    def mine(self, tenant):
        runner = self._runner(tenant)
        if runner is None:
            return
        auth = {"Authorization": f"Bearer {runner[1]}"}
        path = self.rng.choice(["/api/v1/activities", "/api/v1/challenges/run/leaderboard/me", "/api/v1/me",
                                "/api/v1/challenges/run/registration"])
        self.call("mine", tenant, "GET", path, expect=(200,), headers=auth)


class Driver:
    def __init__(self, base_url, port, tenants, people, seconds, max_requests, vnpay, admin_cookies, seed=1,
                 think=(0.05, 0.4)):
        self.base_url, self.port, self.tenants = base_url, port, tenants
        self.people, self.seconds, self.max_requests = people, seconds, max_requests
        self.vnpay, self.admin_cookies, self.seed, self.think = vnpay, admin_cookies, seed, think
        self.stats = Stats()
        self.lock = threading.Lock()
        self.numbers = Counter()
        self.expected = {}
        self.started = time.monotonic()

    def next_number(self, user):
        with self.lock:
            self.numbers[user] += 1
            return self.numbers[user]

    def done(self):
        return (time.monotonic() - self.started >= self.seconds) or self.stats.requests >= self.max_requests

    def run(self):
        self.started = time.monotonic()
        people = [Person(number, self) for number in range(self.people)]
        for person in people:
            person.start()
        for person in people:
            person.join()
        return time.monotonic() - self.started
