"""Benchmarks: one module per `drivestack bench ...` command, and the highway-env reference."""
