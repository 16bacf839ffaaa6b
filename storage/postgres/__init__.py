"""PostgreSQL storage, chosen by ``storage.url`` (SQLite stays the default).

``url`` validates and masks connection URLs (no driver needed: the config imports it), ``connect``
opens a psycopg connection and turns every failure into one ``StorageError`` line with the password
masked, ``schema`` is PostgreSQL's migration list (the same versions as ``storage.schema``'s).
psycopg is imported only when a PostgreSQL URL is used: SQLite needs nothing of it.
"""
