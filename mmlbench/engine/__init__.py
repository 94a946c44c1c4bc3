"""The core engine: encoders, losses, negative sampling, training and full-ranking evaluation."""
