"""Training DFF end to end on key/reference frame pairs: targets, losses, schedule, state and the trainer."""
