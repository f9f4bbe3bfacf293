"""The worker process: takes refreshes from the queue and runs them under leases and deadlines."""
