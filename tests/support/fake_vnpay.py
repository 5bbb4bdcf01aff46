"""A VNPay sandbox on 127.0.0.1 for tests: the payment page, the IPN call and the merchant web API.

It speaks real HTTP on a free port from a daemon thread (like tests/support/oidc_provider.py), so the gateway
plugin and the app talk to it as they would to https://sandbox.vnpayment.vn:

- GET /paymentv2/vpcpay.html checks the request like VNPay does (version 2.1.0, command, TmnCode, amount x 100
  and whole dong, VND, TxnRef format and not seen before, OrderInfo without diacritics, locale, dates in
  GMT+7 and not expired, no vnp_SecureHashType, the HMAC-SHA512 signature). A refused request gets HTTP 400
  with the reason (VNPay shows an error page) and the reason is kept in `errors`. Otherwise the payer's choice
  is `next_outcome` (one payment only, then back to "success"):
  "success" | "declined" (51, not enough balance) | "canceled" (24, payer canceled) -> 302 to vnp_ReturnUrl
  with the signed result; "abandon" -> the payer closes the page (status 01, no redirect).
- `send_ipn(txn_ref, notify_url, tamper=False)` makes VNPay's IPN call (a GET with the signed result) to the
  merchant and returns the merchant's response; `ipn_params` gives the same parameters without sending them.
- POST /merchant_webapi/api/transaction answers querydr and refund: JSON in, JSON out, the request checksum
  (pipe-joined fields in the documented order) checked, request ids unique, vnp_TransactionDate must be the
  payment's vnp_CreateDate (else 91), answers signed the documented way.

The signing code here is written apart from the gateway's on purpose, so one cannot hide a bug in the other.
Approximations: the refund rules (93 for an amount above what is left or a "full" refund of another amount,
04 for a full refund after a partial one, 95 for a payment that did not succeed) follow VNPay's error table as
we read it; querydr on a refunded payment reports vnp_TransactionType 02 / 03 with status 00.
"""

import hashlib
import hmac
import itertools
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import quote_plus, urlencode

import requests
from flask import Flask, jsonify, redirect, request
from werkzeug.serving import make_server

GMT7 = timezone(timedelta(hours=7))
PAY_FIELDS = ("vnp_Version", "vnp_Command", "vnp_TmnCode", "vnp_Amount", "vnp_CurrCode", "vnp_TxnRef",
              "vnp_OrderInfo", "vnp_OrderType", "vnp_Locale", "vnp_ReturnUrl", "vnp_IpAddr", "vnp_CreateDate",
              "vnp_ExpireDate")
QUERYDR_IN = ("vnp_RequestId", "vnp_Version", "vnp_Command", "vnp_TmnCode", "vnp_TxnRef", "vnp_TransactionDate",
              "vnp_CreateDate", "vnp_IpAddr", "vnp_OrderInfo")
REFUND_IN = ("vnp_RequestId", "vnp_Version", "vnp_Command", "vnp_TmnCode", "vnp_TransactionType", "vnp_TxnRef",
             "vnp_Amount", "vnp_TransactionNo", "vnp_TransactionDate", "vnp_CreateBy", "vnp_CreateDate",
             "vnp_IpAddr", "vnp_OrderInfo")
ANSWER_OUT = ("vnp_ResponseId", "vnp_Command", "vnp_ResponseCode", "vnp_Message", "vnp_TmnCode", "vnp_TxnRef",
              "vnp_Amount", "vnp_BankCode", "vnp_PayDate", "vnp_TransactionNo", "vnp_TransactionType",
              "vnp_TransactionStatus", "vnp_OrderInfo")
QUERYDR_OUT = (*ANSWER_OUT, "vnp_PromotionCode", "vnp_PromotionAmount")
OUTCOMES = {  # outcome -> (vnp_ResponseCode, vnp_TransactionStatus)
    "success": ("00", "00"),
    "declined": ("51", "02"),
    "canceled": ("24", "02"),
    "abandon": (None, "01"),
}


def _hmac(secret, text):
    return hmac.new(secret.encode(), text.encode(), hashlib.sha512).hexdigest()


def _now_text():
    return datetime.now(GMT7).strftime("%Y%m%d%H%M%S")


@dataclass
class Refund:
    request_id: str
    amount: int  # VND
    transaction_type: str  # 02 full, 03 partial
    created_by: str
    response_id: str


@dataclass
class Transaction:
    txn_ref: str
    amount: int  # VND (what the payer was asked, vnp_Amount / 100)
    order_info: str
    create_date: str
    return_url: str
    locale: str
    ip_addr: str
    transaction_no: str = "0"
    response_code: str | None = None
    status: str = "01"  # vnp_TransactionStatus
    bank_code: str = "NCB"
    pay_date: str = ""
    refunds: list = field(default_factory=list)

    @property
    def refunded(self) -> int:
        return sum(refund.amount for refund in self.refunds)

    @property
    def transaction_type(self) -> str:
        if not self.refunds:
            return "01"
        return "02" if self.refunded == self.amount and self.refunds[0].transaction_type == "02" else "03"


class FakeVNPay:
    def __init__(self, tmn_code="KSTEST01", hash_secret="FAKEVNPAYSECRETKINDSTRIDE0123456"):
        self.tmn_code = tmn_code
        self.hash_secret = hash_secret
        self.next_outcome = "success"
        self.transactions: dict[str, Transaction] = {}
        self.payment_requests: list[dict] = []  # the payment page's query parameters as received
        self.api_requests: list[dict] = []  # querydr / refund bodies as received
        self.errors: list[str] = []  # why requests were refused
        self.ipn_log: list[tuple[str, int, str]] = []  # (txn_ref, HTTP status, body) of each IPN sent
        self._api_failures: list[int] = []
        self._tamper_next_answer = False
        self._request_ids: set[str] = set()
        self._numbers = itertools.count(14_000_001)
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, self._create_app(), threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self.payment_url = f"{self.url}/paymentv2/vpcpay.html"
        self.api_url = f"{self.url}/merchant_webapi/api/transaction"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-vnpay", daemon=True)
        self._thread.start()

    # -- test controls ----------------------------------------------------------------------------------------

    @property
    def credentials(self) -> dict:
        """A tenant's VNPay settings pointing here (the values of kindstride Credentials)."""
        return {"tmn_code": self.tmn_code, "hash_secret": self.hash_secret, "payment_url": self.payment_url,
                "api_url": self.api_url}

    def transaction(self, txn_ref) -> Transaction:
        with self._lock:
            return self.transactions[txn_ref]

    def fail_next_api(self, status=503, times=1):
        """Answer the next `times` querydr / refund calls with this HTTP status."""
        with self._lock:
            self._api_failures.extend([status] * times)

    def tamper_next_answer(self):
        """The next API answer has its vnp_Amount changed after signing (a forged or corrupted answer)."""
        with self._lock:
            self._tamper_next_answer = True

    def result_params(self, txn_ref) -> dict:
        """The signed result VNPay sends to the return URL and the IPN URL."""
        with self._lock:
            txn = self.transactions[txn_ref]
            params = {
                "vnp_Amount": str(txn.amount * 100),
                "vnp_BankCode": txn.bank_code,
                "vnp_CardType": "ATM",
                "vnp_OrderInfo": txn.order_info,
                "vnp_PayDate": txn.pay_date or _now_text(),
                "vnp_ResponseCode": txn.response_code or "99",
                "vnp_TmnCode": self.tmn_code,
                "vnp_TransactionNo": txn.transaction_no,
                "vnp_TransactionStatus": txn.status,
                "vnp_TxnRef": txn.txn_ref,
            }
            if txn.status == "00":
                params["vnp_BankTranNo"] = f"VNP{txn.transaction_no}"
        params["vnp_SecureHash"] = self.sign_query(params)
        return params

    def ipn_params(self, txn_ref, tamper=False) -> dict:
        params = self.result_params(txn_ref)
        if tamper:
            params["vnp_Amount"] = str(int(params["vnp_Amount"]) * 10)
        return params

    def send_ipn(self, txn_ref, notify_url, tamper=False) -> requests.Response:
        """VNPay's IPN call: a GET to the merchant's IPN URL; returns the merchant's response."""
        response = requests.get(notify_url, params=self.ipn_params(txn_ref, tamper=tamper), timeout=10)
        with self._lock:
            self.ipn_log.append((txn_ref, response.status_code, response.text))
        return response

    def sign_query(self, params) -> str:
        pairs = sorted((k, v) for k, v in params.items() if k not in ("vnp_SecureHash", "vnp_SecureHashType"))
        return _hmac(self.hash_secret, urlencode(pairs, quote_via=quote_plus))

    def sign_pipe(self, values, names) -> str:
        return _hmac(self.hash_secret, "|".join(str(values.get(name, "") or "") for name in names))

    def stop(self):
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
            self._server.server_close()

    # -- the payment page -------------------------------------------------------------------------------------

    def _refuse(self, reason, status=400):
        with self._lock:
            self.errors.append(reason)
        return f"VNPay (fake): {reason}", status

    def _check_payment(self, raw) -> str | None:
        """Why VNPay would refuse this payment request, or None."""
        if any(len(values) != 1 for values in raw.values()):
            return "repeated parameter"
        params = {key: values[0] for key, values in raw.items()}
        missing = [name for name in (*PAY_FIELDS, "vnp_SecureHash") if not params.get(name)]
        if missing:
            return f"missing {', '.join(missing)}"
        if "vnp_SecureHashType" in params:
            return "vnp_SecureHashType is not sent in version 2.1.0"
        if not hmac.compare_digest(self.sign_query(params), params["vnp_SecureHash"]):
            return "invalid signature (97)"
        checks = [
            (params["vnp_Version"] == "2.1.0", "vnp_Version must be 2.1.0"),
            (params["vnp_Command"] == "pay", "vnp_Command must be pay"),
            (params["vnp_TmnCode"] == self.tmn_code, "unknown merchant (02)"),
            (re.fullmatch(r"\d{1,12}", params["vnp_Amount"]) is not None, "vnp_Amount is not Numeric[1,12]"),
            (params["vnp_CurrCode"] == "VND", "vnp_CurrCode must be VND"),
            (re.fullmatch(r"[A-Za-z0-9_-]{1,100}", params["vnp_TxnRef"]) is not None, "bad vnp_TxnRef"),
            (re.fullmatch(r"[ -~]{1,255}", params["vnp_OrderInfo"]) is not None,
             "vnp_OrderInfo must be Vietnamese without diacritics"),
            (len(params["vnp_OrderType"]) <= 100, "vnp_OrderType too long"),
            (params["vnp_Locale"] in ("vn", "en"), "vnp_Locale must be vn or en"),
            (re.match(r"https?://", params["vnp_ReturnUrl"]) is not None and len(params["vnp_ReturnUrl"]) <= 255,
             "bad vnp_ReturnUrl"),
            (7 <= len(params["vnp_IpAddr"]) <= 45, "bad vnp_IpAddr"),
        ]
        for ok, reason in checks:
            if not ok:
                return reason
        amount, rest = divmod(int(params["vnp_Amount"]), 100)
        if rest or amount <= 0:
            return "vnp_Amount must be a positive whole number of dong times 100"
        try:
            created = datetime.strptime(params["vnp_CreateDate"], "%Y%m%d%H%M%S").replace(tzinfo=GMT7)
            expires = datetime.strptime(params["vnp_ExpireDate"], "%Y%m%d%H%M%S").replace(tzinfo=GMT7)
        except ValueError:
            return "dates must be yyyyMMddHHmmss"
        now = datetime.now(GMT7)
        if not created < expires:
            return "vnp_ExpireDate must be after vnp_CreateDate"
        if created > now + timedelta(minutes=5):
            return "vnp_CreateDate is in the future (is it GMT+7?)"
        if now > expires:
            return "payment link expired (11)"
        with self._lock:
            if params["vnp_TxnRef"] in self.transactions:
                return "transaction already exists (01)"
        return None

    def _pay(self):
        raw = request.args.to_dict(flat=False)
        with self._lock:
            self.payment_requests.append({key: values[0] for key, values in raw.items()})
        reason = self._check_payment(raw)
        if reason:
            return self._refuse(reason)
        params = {key: values[0] for key, values in raw.items()}
        with self._lock:
            outcome, self.next_outcome = self.next_outcome, "success"
            response_code, status = OUTCOMES[outcome]
            txn = Transaction(txn_ref=params["vnp_TxnRef"], amount=int(params["vnp_Amount"]) // 100,
                              order_info=params["vnp_OrderInfo"], create_date=params["vnp_CreateDate"],
                              return_url=params["vnp_ReturnUrl"], locale=params["vnp_Locale"],
                              ip_addr=params["vnp_IpAddr"], response_code=response_code, status=status)
            if outcome != "canceled":
                txn.transaction_no = str(next(self._numbers))
            if outcome != "abandon":
                txn.pay_date = _now_text()
            self.transactions[txn.txn_ref] = txn
        if outcome == "abandon":
            return "VNPay (fake): choose a payment method", 200
        result = self.result_params(txn.txn_ref)
        separator = "&" if "?" in txn.return_url else "?"
        return redirect(f"{txn.return_url}{separator}{urlencode(result, quote_via=quote_plus)}", code=302)

    # -- the merchant web API ---------------------------------------------------------------------------------

    def _answer(self, body, command, code, message, names, **values):
        answer = {"vnp_ResponseId": uuid.uuid4().hex, "vnp_Command": command, "vnp_ResponseCode": code,
                  "vnp_Message": message, "vnp_TmnCode": self.tmn_code,
                  "vnp_TxnRef": (body or {}).get("vnp_TxnRef", ""), **values}
        answer["vnp_SecureHash"] = self.sign_pipe(answer, names)
        with self._lock:
            tamper, self._tamper_next_answer = self._tamper_next_answer, False
        if tamper:
            answer["vnp_Amount"] = str(int(answer.get("vnp_Amount") or 0) + 100)
        return jsonify(answer)

    def _api(self):
        with self._lock:
            failure = self._api_failures.pop(0) if self._api_failures else None
        if failure:
            return f"VNPay (fake): HTTP {failure}", failure
        body = request.get_json(silent=True)
        with self._lock:
            self.api_requests.append(body)
        if not isinstance(body, dict):
            return self._answer({}, "", "03", "Invalid data format", ANSWER_OUT)
        command = body.get("vnp_Command")
        names, out = {"querydr": (QUERYDR_IN, QUERYDR_OUT), "refund": (REFUND_IN, ANSWER_OUT)}.get(command,
                                                                                                   (None, None))
        if names is None:
            return self._answer(body, str(command), "03", "Unknown command", ANSWER_OUT)
        if any(not isinstance(body.get(name), str) or not body.get(name) for name in names if
               name != "vnp_TransactionNo") or not isinstance(body.get("vnp_SecureHash"), str):
            return self._answer(body, command, "03", "Invalid data format", out)
        if body["vnp_TmnCode"] != self.tmn_code:
            return self._answer(body, command, "02", "Invalid TmnCode", out)
        if not hmac.compare_digest(self.sign_pipe(body, names), body["vnp_SecureHash"]):
            return self._answer(body, command, "97", "Invalid checksum", out)
        if body["vnp_Version"] != "2.1.0" or not re.fullmatch(r"[A-Za-z0-9]{1,32}", body["vnp_RequestId"]) \
                or not re.fullmatch(r"\d{14}", body["vnp_TransactionDate"]) \
                or not re.fullmatch(r"\d{14}", body["vnp_CreateDate"]):
            return self._answer(body, command, "03", "Invalid data format", out)
        with self._lock:
            if body["vnp_RequestId"] in self._request_ids:
                duplicate = True
            else:
                duplicate = False
                self._request_ids.add(body["vnp_RequestId"])
            txn = self.transactions.get(body["vnp_TxnRef"])
        if duplicate:
            return self._answer(body, command, "94", "Duplicate request", out)
        if txn is None or txn.create_date != body["vnp_TransactionDate"]:
            return self._answer(body, command, "91", "Transaction not found", out)
        if command == "querydr":
            return self._answer(body, command, "00", "QueryDR Success", out, **self._describe(txn))
        return self._refund(body, txn)

    def _describe(self, txn):
        return {"vnp_Amount": str(txn.amount * 100), "vnp_BankCode": txn.bank_code, "vnp_PayDate": txn.pay_date,
                "vnp_TransactionNo": txn.transaction_no, "vnp_TransactionType": txn.transaction_type,
                "vnp_TransactionStatus": txn.status, "vnp_OrderInfo": txn.order_info}

    def _refund(self, body, txn):
        kind = body["vnp_TransactionType"]
        if kind not in ("02", "03") or not re.fullmatch(r"\d{1,12}", body["vnp_Amount"]):
            return self._answer(body, "refund", "03", "Invalid data format", ANSWER_OUT)
        amount, rest = divmod(int(body["vnp_Amount"]), 100)
        number = body.get("vnp_TransactionNo") or "0"
        with self._lock:
            left = txn.amount - txn.refunded
            if number not in ("0", txn.transaction_no):
                code, message = "91", "Transaction not found"
            elif txn.status != "00":
                code, message = "95", "Transaction is not successful at VNPAY"
            elif kind == "02" and txn.refunds:
                code, message = "04", "Full refund not allowed after a partial refund"
            elif rest or amount <= 0 or amount > left or (kind == "02" and amount != txn.amount):
                code, message = "93", "Invalid refund amount"
            else:
                code, message = "00", "Refund success"
                refund = Refund(request_id=body["vnp_RequestId"], amount=amount, transaction_type=kind,
                                created_by=body["vnp_CreateBy"], response_id=uuid.uuid4().hex)
                txn.refunds.append(refund)
        if code != "00":
            return self._answer(body, "refund", code, message, ANSWER_OUT)
        answer_values = {**self._describe(txn), "vnp_Amount": str(amount * 100), "vnp_TransactionType": kind,
                         "vnp_PayDate": _now_text(), "vnp_OrderInfo": body["vnp_OrderInfo"]}
        response = self._answer(body, "refund", "00", message, ANSWER_OUT, **answer_values)
        data = response.get_json()
        with self._lock:
            refund.response_id = data["vnp_ResponseId"]
        return response

    def _create_app(self):
        app = Flask("fake_vnpay")
        app.add_url_rule("/paymentv2/vpcpay.html", "pay", self._pay, methods=["GET"])
        app.add_url_rule("/merchant_webapi/api/transaction", "api", self._api, methods=["POST"])
        return app


def start_fake_vnpay(**kwargs) -> FakeVNPay:
    """Start a fake VNPay on 127.0.0.1 at a free port; call `stop()` when done."""
    return FakeVNPay(**kwargs)
