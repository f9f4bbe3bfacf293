"""One router per resource: agents, their coverage, background tasks, the taxonomy, health and
metrics.

Resource routers carry the whole `/api/v1/...` path themselves, so the route template a request
matched (the label of the request metrics) is the path a client sees.
"""

API_PREFIX = "/api/v1"
