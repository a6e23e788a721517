"""Code that joins the parts: detector + tracker (detection velocities); the closed loop and replay come here."""
