"""Random tokens handed to people, of which only a SHA-256 hash is stored."""

import hashlib
import secrets


def new_token(prefix="") -> tuple[str, str]:
    """A fresh token and its hash."""
    token = prefix + secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
