"""Encryption of tenant secrets at rest (OIDC client secrets, gateway keys).

MultiFernet: the first key encrypts, every key decrypts, so keys rotate by prepending a new one.
"""

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app


class SecretsBox:
    def __init__(self, keys):
        if not keys:
            raise ValueError("KINDSTRIDE_SECRETS_KEY holds no key")
        try:
            self._fernet = MultiFernet([Fernet(key.strip().encode()) for key in keys])
        except ValueError as error:
            raise ValueError(f"KINDSTRIDE_SECRETS_KEY is not a list of Fernet keys: {error}") from None

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ValueError("a stored secret cannot be decrypted with KINDSTRIDE_SECRETS_KEY") from None

    def rotate(self, token: str) -> str:
        return self._fernet.rotate(token.encode()).decode()


def secrets_box() -> SecretsBox:
    return current_app.extensions["kindstride.secrets"]


def init_secrets(app):
    app.extensions["kindstride.secrets"] = SecretsBox(app.config["SECRETS_KEY"].split(","))
