"""Class-unlearning benchmark: the engine that trains and scores, the report that renders rows, and the CLI."""

__version__ = "0.1.0"

# The scoring protocol rows are computed under (docs/protocol.md). 2: leave-one-model-out U-LiRA, MIA-NN
# over every reference sample with its null from retrained models, privacy gaps against the nulls.
# Rows without a ``protocol`` field are protocol 1; the leaderboard never mixes two in one table.
PROTOCOL = 2
