"""Storage and infrastructure: the database and its pool, outages, batching, the rate-limit
stores, mail transport, password hashing, logs, the request context, the clock, the embedded
PostgreSQL of development and the workers. Nothing here knows about accounts."""
