"""The agents that tap the topics: batch consumers folded in plain Python."""
