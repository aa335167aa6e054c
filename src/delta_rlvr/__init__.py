"""delta-rlvr: RL from verifiable rewards with DelTA per-token credit assignment."""

__version__ = "0.1.0"
