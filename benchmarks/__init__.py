"""`vqgen bench`: ours against the peer library and naive baselines, in one process, on the same shapes."""
