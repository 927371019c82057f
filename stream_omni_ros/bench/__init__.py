"""`stream-omni-ros bench`: latency and throughput of spoken turns, with same-run baselines."""
