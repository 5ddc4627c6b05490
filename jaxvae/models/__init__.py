"""Models: one module per paper (a frozen ``Config``, the Linen model, ``make_loss_fn``/``make_eval_fn``)."""
