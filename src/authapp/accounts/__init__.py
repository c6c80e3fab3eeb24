"""The account rules, one module per capability: registration and sign-in, sessions, API tokens,
the email lifecycle (verification, recovery, changes), audit, passwords, administration.

Rules take what they need (database, settings, hashing) as arguments, raise `authapp.errors`
errors, and know nothing of requests or responses; below them are models/ and infra/.
"""
