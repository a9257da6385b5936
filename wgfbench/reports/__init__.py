"""Reports: leaderboards and comparisons built from run directories."""
