"""Strategies: pure, deterministic ``decide(snapshot) -> Intent``; they import only the domain."""
