"""The benchmarks behind ``shanju bench``, apart from the product: each measures a whole path
as a user of the platform meets it and returns one JSON-ready report; ``docs/benchmarks.md``
keeps the results with the machine. The product's packages never import from here.

* :mod:`~shanju.bench.donations` — ``shanju bench donations``: gifts end to end, in-process.
* :mod:`~shanju.bench.pages` — ``shanju bench pages``: the main pages and API reads on the demo.
* :mod:`~shanju.bench.giving_day` — ``shanju bench giving-day``: a 99-style opening through the
  group-commit engine against one transaction per gift.
* :mod:`~shanju.bench.http` — ``shanju bench http``: giving-day payment notifications through a
  running server over loopback.
* :mod:`~shanju.bench.multinode` — ``shanju bench multi-node``: two server nodes in network
  namespaces of their own behind nginx, one PostgreSQL and Redis (docs/deploy.md).
* :mod:`~shanju.bench.transparency` — ``shanju bench transparency``: the Merkle log beside
  pymerkle.
* :mod:`~shanju.bench.summit` — ``shanju bench summit``: live-room WebSocket clients against
  real server processes.
* :mod:`~shanju.bench.common` — what they share: the machine, percentiles, throw-away
  databases.
"""
