"""The engine: the merge rules and the state that keeps their outcome between builds."""
