"""Agent Growth keeps knowledge agents' taxonomy coverage fresh."""

__version__ = "0.1.0"
