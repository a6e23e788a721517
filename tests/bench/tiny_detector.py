"""The options of a tiny detector run (seconds on a CPU) shared by the perception bench tests."""

# `drivestack train detector` options: a 160x96 input, a narrow backbone and small batches.
TINY_TRAIN = [
    "--input-width",
    "160",
    "--input-height",
    "96",
    "--widths",
    "8",
    "16",
    "32",
    "32",
    "--neck-channels",
    "16",
    "--batch-size",
    "4",
    "--threads",
    "1",
    "--no-progress",
]
