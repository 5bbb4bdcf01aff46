"""What can be done with accounts, independent of the web or API that asks for it."""

import re
from datetime import timedelta

import sqlalchemy as sa

from kindstride.accounts.models import ROLES, AccountToken, ApiToken, Operator, User, UserRole
from kindstride.accounts.passwords import hash_password, password_problem, verify_password
from kindstride.accounts.tokens import hash_token, new_token
from kindstride.db import db, utcnow

CONFIRM_EMAIL = "confirm_email"
RESET_PASSWORD = "reset_password"
TOKEN_LIFETIME = {CONFIRM_EMAIL: timedelta(days=3), RESET_PASSWORD: timedelta(hours=1)}
API_SCOPES = ("read", "activities:write", "pledges:write", "moderate", "admin")
# Scopes that only some roles may hold: scope -> roles allowed to create a token with it.
PRIVILEGED_SCOPES = {"admin": {"admin"}, "moderate": {"admin", "moderator"}, "pledges:write": {"admin", "sponsor"}}
API_TOKEN_PREFIX = "ks_"
LAST_USED_GRANULARITY = timedelta(minutes=1)  # how fresh an API token's last_used_at is kept
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class AccountError(ValueError):
    """A request about an account cannot be done; `field` names the input at fault."""

    def __init__(self, field, message):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def normalise_email(email: str) -> str:
    email = (email or "").strip().lower()
    if not EMAIL_PATTERN.match(email) or len(email) > 254:
        raise AccountError("email", "is not a valid email address")
    return email


def find_user_by_email(email):
    return db.session.scalar(sa.select(User).where(User.email == email))


def sign_up(email, name, password) -> User:
    email = normalise_email(email)
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise AccountError("name", "is required (at most 200 characters)")
    problem = password_problem(password or "")
    if problem:
        raise AccountError("password", problem)
    if find_user_by_email(email):
        raise AccountError("email", "already has an account here; sign in or reset the password")
    user = User(email=email, name=name, password_hash=hash_password(password))
    db.session.add(user)
    db.session.flush()
    grant_role(user, "participant")
    return user


def authenticate(email, password) -> User | None:
    """The account for this email and password, or None; timing does not reveal which was wrong."""
    try:
        email = normalise_email(email)
    except AccountError:
        email = ""
    user = find_user_by_email(email) if email else None
    valid = verify_password(user.password_hash if user else None, password or "")
    if not valid or user.is_disabled:
        return None
    return user


def issue_account_token(user, purpose) -> str:
    token, token_hash = new_token()
    db.session.add(AccountToken(user_id=user.id, purpose=purpose, token_hash=token_hash,
                                expires_at=utcnow() + TOKEN_LIFETIME[purpose]))
    db.session.flush()
    return token


def redeem_account_token(token, purpose) -> User:
    """The token's user; the token is spent. Unknown, used and expired tokens are refused alike."""
    record = db.session.scalar(
        sa.select(AccountToken).where(AccountToken.token_hash == hash_token(token or ""),
                                      AccountToken.purpose == purpose).with_for_update()
    )
    if record is None or record.used_at is not None or record.expires_at < utcnow():
        raise AccountError("token", "this link is invalid, already used or expired; ask for a new one")
    record.used_at = utcnow()
    return db.session.get(User, record.user_id)


def confirm_email(token) -> User:
    user = redeem_account_token(token, CONFIRM_EMAIL)
    user.email_confirmed_at = user.email_confirmed_at or utcnow()
    return user


def reset_password(token, password) -> User:
    problem = password_problem(password or "")
    if problem:
        raise AccountError("password", problem)
    user = redeem_account_token(token, RESET_PASSWORD)
    user.password_hash = hash_password(password)
    user.session_version += 1
    # Any other reset link still out there dies with this one.
    db.session.execute(
        sa.update(AccountToken).where(AccountToken.user_id == user.id, AccountToken.purpose == RESET_PASSWORD,
                                      AccountToken.used_at.is_(None)).values(used_at=utcnow())
    )
    return user


def roles_of(user) -> set[str]:
    return set(db.session.scalars(sa.select(UserRole.role).where(UserRole.user_id == user.id)))


def grant_role(user, role):
    if role not in ROLES:
        raise AccountError("role", f"must be one of {', '.join(ROLES)}")
    if role not in roles_of(user):
        db.session.add(UserRole(user_id=user.id, role=role))
        db.session.flush()


def revoke_role(user, role):
    db.session.execute(sa.delete(UserRole).where(UserRole.user_id == user.id, UserRole.role == role))


def create_api_token(user, name, scopes, days) -> tuple[ApiToken, str]:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise AccountError("name", "is required (at most 100 characters)")
    unknown = set(scopes) - set(API_SCOPES)
    if not scopes or unknown:
        raise AccountError("scopes", f"choose from {', '.join(API_SCOPES)}")
    roles = roles_of(user)
    for scope in scopes:
        if scope in PRIVILEGED_SCOPES and not roles & PRIVILEGED_SCOPES[scope]:
            raise AccountError("scopes", f"{scope} needs the {' or '.join(sorted(PRIVILEGED_SCOPES[scope]))} role")
    if not isinstance(days, int) or not 1 <= days <= 365:
        raise AccountError("days", "must be a whole number of days from 1 to 365")
    token, token_hash = new_token(API_TOKEN_PREFIX)
    record = ApiToken(user_id=user.id, name=name, prefix=token[:10], token_hash=token_hash,
                      scopes=sorted(set(scopes)), expires_at=utcnow() + timedelta(days=days))
    db.session.add(record)
    db.session.flush()
    return record, token


def api_tokens_of(user):
    return db.session.scalars(
        sa.select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.created_at.desc())
    ).all()


def revoke_api_token(user, token_id):
    record = db.session.scalar(sa.select(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == user.id))
    if record is None:
        raise AccountError("token", "no such token")
    record.revoked_at = record.revoked_at or utcnow()
    return record


def create_operator(email, name, password) -> Operator:
    email = normalise_email(email)
    problem = password_problem(password or "")
    if problem:
        raise AccountError("password", problem)
    if db.session.scalar(sa.select(Operator).where(Operator.email == email)):
        raise AccountError("email", "is already an operator")
    operator = Operator(email=email, name=name or email, password_hash=hash_password(password))
    db.session.add(operator)
    db.session.flush()
    return operator


def authenticate_operator(email, password) -> Operator | None:
    try:
        email = normalise_email(email)
    except AccountError:
        email = ""
    operator = db.session.scalar(sa.select(Operator).where(Operator.email == email)) if email else None
    return operator if verify_password(operator.password_hash if operator else None, password or "") else None
