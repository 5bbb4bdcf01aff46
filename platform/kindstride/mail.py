"""Outgoing email over SMTP; without KINDSTRIDE_SMTP_HOST (the demo) messages go to the log instead."""

import logging
import smtplib
from email.message import EmailMessage

from flask import current_app

log = logging.getLogger(__name__)


def send_mail(to, subject, body, reply_to=None, attachments=()):
    """attachments: (filename, bytes, mime type like "application/pdf")."""
    config = current_app.config
    message = EmailMessage()
    message["From"] = config["MAIL_FROM"]
    message["To"] = to
    message["Subject"] = subject
    if reply_to:
        message["Reply-To"] = reply_to
    message.set_content(body)
    for filename, data, mime_type in attachments:
        maintype, _slash, subtype = mime_type.partition("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    if not config["SMTP_HOST"]:
        log.warning("no SMTP server configured; mail to %s:\nSubject: %s\n\n%s", to, subject, body)
        return
    with smtplib.SMTP(config["SMTP_HOST"], config["SMTP_PORT"], timeout=30) as smtp:
        if config["SMTP_STARTTLS"]:
            smtp.starttls()
        if config["SMTP_USERNAME"]:
            smtp.login(config["SMTP_USERNAME"], config["SMTP_PASSWORD"] or "")
        smtp.send_message(message)
