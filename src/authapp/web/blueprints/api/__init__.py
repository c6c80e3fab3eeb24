"""The JSON API: one blueprint, `api` (blueprint.py), and a module per resource, each adding its
routes to it when imported."""

from . import admin, auth, me, mfa, passkeys, sessions, tokens
from .blueprint import bp

__all__ = ["admin", "auth", "bp", "me", "mfa", "passkeys", "sessions", "tokens"]
