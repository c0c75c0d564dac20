"""A small threaded SCIM 2.0 server that adds a fixed latency per request (benchmarks)."""
