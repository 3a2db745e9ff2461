"""What bench measures besides the model: utilisation sampling, the machine description, FLOPs, allocator settings."""
