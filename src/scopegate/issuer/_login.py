"""Resource-owner password checks, throttled: one rule for the password grant and the login form.

Each attempt is reserved on the normalised username's and the client address's counters
*before* the password is hashed (:mod:`scopegate.issuer._throttle`), so concurrent
guesses cannot outrun the limit. While an account waits, even the correct password is
refused with the same answer as a wrong one (issuer spec PW-5, PW-7). An unknown or
locked user costs one dummy verification with the users' own hash parameters, so timing
tells nothing either.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from scopegate.issuer._clients import CLIENT_SUBJECT_PREFIX, normalize_username
from scopegate.issuer._errors import InvalidGrantError, TooManyRequestsError
from scopegate.issuer._passwords import (
    MAX_SECRET_BYTES,
    hash_profile,
    hash_secret,
    needs_rehash,
    typical_profile,
    verify_dummy,
    verify_secret,
)
from scopegate.issuer._throttle import Limits, Throttle, Throttled
from scopegate.issuer._users import User, UserStore

__all__ = ["BAD_CREDENTIALS", "ResourceOwnerLogin"]

logger = logging.getLogger("scopegate.issuer")
BAD_CREDENTIALS = "Invalid resource owner credentials"


class ResourceOwnerLogin:
    """Checks a username and password under the brute-force limits.

    Args:
        users: The user store.
        throttle: The issuer's throttle (counters in its store).
        limits: The issuer's limits (``user`` and ``address`` counters are used).
    """

    def __init__(self, users: UserStore, *, throttle: Throttle, limits: Limits) -> None:
        self.users = users
        self._throttle = throttle
        self._limits = limits
        known = iter(users) if isinstance(users, Iterable) else iter(())
        self._profile = typical_profile((user.password_hash,) for user in known)

    def authenticate(self, username: str, password: str, address: str | None, now: float) -> User:
        """The user, if the password is right and neither counter must wait.

        Raises:
            InvalidGrantError: Unknown user, wrong password, disabled or waiting
                (locked) account: one fixed description for all.
            TooManyRequestsError: The client address must wait (429 + ``Retry-After``).
        """
        address_limit, user_limit = self._limits.address, self._limits.user
        slots = [
            (address_limit, address_limit.key(address or "-")),
            (user_limit, user_limit.key(normalize_username(username))),
        ]
        try:
            attempt = self._throttle.reserve(slots, now)
        except Throttled as refused:
            if refused.limit is not user_limit:
                raise TooManyRequestsError(retry_after=refused.retry_after) from None
            # Locked: refuse even the right password, same body and cost as a wrong one.
            verify_dummy(self._profile, password)
            raise InvalidGrantError(BAD_CREDENTIALS) from None
        with attempt:
            user = self._check(username, password)
            attempt.succeeded()
        if needs_rehash(user.password_hash):
            self.users.update_password_hash(user, hash_secret(password))
        if user.subject.startswith(CLIENT_SUBJECT_PREFIX):
            logger.error("login refused: user id uses the reserved client: prefix")
            raise InvalidGrantError(BAD_CREDENTIALS)
        return user

    def _check(self, username: str, password: str) -> User:
        """Judge one (reserved) guess; ``InvalidGrantError`` for any wrong one."""
        user = None
        ok = False
        if len(password.encode()) <= MAX_SECRET_BYTES and len(username) <= 256:
            user = self.users.find_user(username)
            if user is None:
                verify_dummy(self._profile, password)
            else:
                self._profile = (hash_profile(user.password_hash),)
                ok = verify_secret(user.password_hash, password)
        if not ok or user is None or user.disabled:
            raise InvalidGrantError(BAD_CREDENTIALS)
        return user
