"""The Starlette web front end: authenticate, validate, fan out, answer."""
