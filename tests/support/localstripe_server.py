"""localstripe (a stateful fake of Stripe's API, https://github.com/adrienverge/localstripe) for tests.

`start_localstripe()` runs it as a subprocess of this venv's Python on a free port and waits until it answers;
`LocalStripe.configure_webhook` registers an endpoint it sends signed events to; `LocalStripe.stop` ends it.
Clients reach it at `LocalStripe.url` (a gateway's `api_base`). It accepts any secret key that starts with
"sk_" and keeps one store for all of them: it does not separate accounts by key.

It is launched through this file (`python localstripe_server.py --port N`, which calls localstripe's own
`start()`, the `localstripe` command's entry point) with two changes to localstripe 1.15:
- PaymentIntents accept `description`, as Stripe's API does (localstripe answers 400 "Unexpected
  description"); it is stored and returned.
- The store is not pickled to /tmp/localstripe.pickle after every write: that file is shared by every
  localstripe on the machine, and a server started with --from-scratch never reads it.

What localstripe does, relied on by the helpers and tests (checked against localstripe 1.15.6 and 1.15.10):
- Webhooks: POST /_config/webhooks/<name> with url, secret and optional events registers an endpoint.
  About one second after an event, it POSTs the event JSON with `Stripe-Signature: t=<created>,v1=<hex
  HMAC-SHA256 of "<created>.<body>" keyed with the secret>` (Stripe's scheme). PaymentIntents send
  payment_intent.succeeded and payment_intent.payment_failed only; refunds send no event.
- The browser's part (`pay`, `authenticate`): localstripe's Stripe.js stand-in (localstripe-v3.js) makes card
  tokens with the publishable key (POST /v1/tokens with key=pk_...) and answers 3-D Secure with
  POST /v1/payment_intents/<id>/_authenticate (publishable key and client secret). Its confirm endpoint takes
  neither the publishable key nor a payment_method ("Not implemented"), so `pay` attaches the card with
  POST /v1/payment_intents/<id> and confirms with the secret key, where Stripe.js would send one confirm.
- Cards: 4242424242424242 succeeds; 4000000000000341 is declined on confirm (402 "Your card was
  declined.", the PaymentIntent back to requires_payment_method with last_payment_error); 4000000000003220
  needs 3-D Secure (requires_action until `authenticate`). 4000000000000002, Stripe's generic decline, is
  only declined when attached to a customer in localstripe: a PaymentIntent confirmed with it succeeds.
"""

import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import requests

VISA = "4242424242424242"
DECLINED = "4000000000000341"  # declined when charged (Stripe: "attaches, then charges fail")
THREE_D_SECURE = "4000000000003220"  # 3-D Secure 2 required


def free_port() -> int:
    """A port free on both IPv4 and IPv6 (localstripe listens on '::')."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        sock.bind(("::", 0))
        return sock.getsockname()[1]


@dataclass
class LocalStripe:
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def configure_webhook(self, name: str, url: str, secret: str, events: list[str] | None = None):
        """Send events (all, or only `events`) to `url`, signed with `secret`. Registering a name again
        replaces it; localstripe has no way to remove one."""
        body = {"url": url, "secret": secret}
        if events is not None:
            body["events"] = events
        response = requests.post(f"{self.url}/_config/webhooks/{name}", json=body, timeout=5)
        response.raise_for_status()

    def flush(self):
        """Forget every object (webhook endpoints stay)."""
        requests.delete(f"{self.url}/_config/data", timeout=5).raise_for_status()

    def pay(self, intent_id: str, *, publishable_key: str, secret_key: str, card: str = VISA) -> tuple[int, dict]:
        """Pay a PaymentIntent as the payment page would: a card (a 16-digit test number, or an existing
        pm_/card_ id) confirmed on the intent. Returns localstripe's status code and JSON: the PaymentIntent,
        or {"error": {...}} for a declined card (402)."""
        payment_method = card
        if card.isdigit():
            token = requests.post(f"{self.url}/v1/tokens", timeout=5, data={
                "key": publishable_key, "card[number]": card, "card[exp_month]": "12", "card[exp_year]": "2034",
                "card[cvc]": "123"})
            token.raise_for_status()
            payment_method = token.json()["card"]["id"]
        attach = requests.post(f"{self.url}/v1/payment_intents/{intent_id}", auth=(secret_key, ""), timeout=5,
                               data={"payment_method": payment_method})
        if attach.status_code != 200:
            return attach.status_code, attach.json()
        confirm = requests.post(f"{self.url}/v1/payment_intents/{intent_id}/confirm", auth=(secret_key, ""),
                                timeout=5)
        return confirm.status_code, confirm.json()

    def authenticate(self, intent_id: str, client_secret: str, *, publishable_key: str,
                     success: bool = True) -> tuple[int, dict]:
        """Complete (or fail) the 3-D Secure challenge of a PaymentIntent in requires_action, as
        localstripe's Stripe.js stand-in does."""
        response = requests.post(
            f"{self.url}/v1/payment_intents/{intent_id}/_authenticate",
            params={"success": "true" if success else "false"},
            json={"key": publishable_key, "client_secret": client_secret}, timeout=5)
        return response.status_code, response.json()

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log_path.unlink(missing_ok=True)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_localstripe(timeout: float = 20) -> LocalStripe:
    """Start localstripe on a free port and return once it answers HTTP (or raise with its log)."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="localstripe-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--port", str(port),
                                "--from-scratch"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    server = LocalStripe(port=port, process=process, log_path=Path(log.name))
    deadline = time.monotonic() + timeout
    # The JavaScript stand-in needs no key and changes nothing: the cheapest "are you up" there is.
    while not _answers(f"{server.url}/js.stripe.com/v3/"):
        if process.poll() is not None or time.monotonic() > deadline:
            output = server.log()
            server.stop()
            raise RuntimeError(f"localstripe did not start on port {port}:\n{output}")
        time.sleep(0.05)
    return server


def _patch_localstripe():
    from localstripe import resources

    resources.Store.dump_to_disk = lambda self: None

    original_init = resources.PaymentIntent.__init__

    def init_with_description(self, *args, description=None, **kwargs):
        if description is not None and not isinstance(description, str):
            raise resources.UserError(400, "Bad request")
        original_init(self, *args, **kwargs)
        self.description = description

    resources.PaymentIntent.__init__ = init_with_description


if __name__ == "__main__":
    _patch_localstripe()
    from localstripe.server import start

    start()
