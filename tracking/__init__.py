"""3D multi-object tracking (Kalman filter, association, track lifecycle) and nuScenes tracking eval.

Not built yet: see the open tracking issue.
"""
