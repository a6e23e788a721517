"""Scene model, policy training (stable-baselines3 PPO/DQN), baselines and policy evaluation.

Not built yet: see the open planning issue. The simulator's kinematics observation encoder
(`sim.observation.encode_kinematics`) is the one this package's scene model will feed.
"""
