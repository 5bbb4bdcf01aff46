"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it receives, for tests."""

import email
import socket
import threading
from email.policy import default as default_policy

from aiosmtpd.controller import Controller


class Mailbox:
    def __init__(self):
        self.messages = []
        self._arrived = threading.Condition()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        message = email.message_from_bytes(envelope.content, policy=default_policy)
        with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, count=1, timeout=10):
        """The first `count` messages, waiting for a worker to send them (not a sleep: a condition)."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.messages) >= count, timeout=timeout)
        assert len(self.messages) >= count, f"expected {count} emails, got {len(self.messages)}"
        return self.messages[:count]

    def links(self, message):
        import re

        return re.findall(r"https?://\S+", message.get_content())


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_mailbox():
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=_free_port())
    controller.start()
    box.port = controller.port
    box.stop = controller.stop
    return box
