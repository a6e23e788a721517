"""What every part of drivestack shares: frames and geometry, nuScenes format access, run artifacts.

A leaf package: it imports numpy, torch and nuscenes-devkit, and nothing else from drivestack.
"""
