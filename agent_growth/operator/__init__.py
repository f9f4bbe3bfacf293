"""The Kubernetes operator: CoverageRefresh resources in, tasks queued, task state back out.

It depends on the core only (`tasks`, `db`, `settings`, `errors`, `kube`); nothing in the core
or in the API imports it. `main.run` is the `agent-growth operator` command.
"""
