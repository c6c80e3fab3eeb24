"""The HTTP edge: blueprints, guards, CSRF, rate limits, device cookies, errors as answers,
request wrappers, pages, templating, templates and static files. It parses and validates a
request, calls an account rule and shapes the answer."""
