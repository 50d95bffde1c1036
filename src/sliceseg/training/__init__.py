"""Training: settings, the loop in named steps, losses, distributed context, progress."""
