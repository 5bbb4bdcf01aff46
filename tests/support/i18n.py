"""What a page of a Vietnamese tenant says, from the same catalogue the app uses (so tests check the
translated text, not an English string the page never shows)."""

from functools import cache
from pathlib import Path

from babel.messages.pofile import read_po

CATALOGUE = Path(__file__).resolve().parents[2] / "platform/kindstride/translations/vi/LC_MESSAGES/messages.po"


@cache
def _messages():
    with CATALOGUE.open("rb") as po_file:
        return {message.id: message.string for message in read_po(po_file) if isinstance(message.id, str)}


def vi(msgid, **params):
    """The Vietnamese text of msgid, with its placeholders filled."""
    text = _messages()[msgid]
    return text % params if params else text


def vi_part(msgid):
    """The Vietnamese text of msgid up to its first placeholder: for messages whose parameters a test
    does not know."""
    return _messages()[msgid].split("%(")[0].strip()
