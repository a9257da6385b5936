"""Reports: leaderboards and comparisons built from run directories."""

from wgfbench.reports.leaderboard import Leaderboard, build_leaderboard

__all__ = ["Leaderboard", "build_leaderboard"]
