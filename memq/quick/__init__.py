"""The CLI's quick path in server mode: answers from Postgres with psycopg alone.

Reads and a queue-only send are what users run most; importing SQLAlchemy's ORM,
Celery and the workers' runtime costs them 0.5–1 s before the first query. The
quick client (``client.py``) serves the common case over one psycopg connection
and hands everything else (unknown ids, prefixes and names, bad text, writes
other than a send, errors) to the full ``memq.client.Client``, built on first
need, so behaviour and error messages stay those of the full client.
"""
