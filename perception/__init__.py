"""Camera 3D detector, nuScenes-format datasets, training, inference and the detection benchmark.

Not built yet: see the open perception issue.
"""
