"""After the runs: the decoded one-hots figure, pooling seed groups, the confirmatory test's decision."""
