"""``make bench``: latency and throughput of the order path, against a raw nats-py baseline (see __main__)."""
