"""The task lifecycle shared by every door: submitting, queueing, leases, cancellation, ETAs.

`lifecycle` holds the state transitions (PostgreSQL), `queue` the Redis keys and scripts,
`events` the pub/sub signals and `status` the view clients see. Only this package knows the
Redis keys.
"""
