"""What sees: the Captioner protocol, its records, and the backends behind model specs."""
