"""Training: slides -> windows -> pairs (read directly, or from prepared shards) -> one unet on accelerate.

``windows`` is pure maths (the lattice, context windows, dihedral transforms, step-addressed batches,
the validation split); ``index`` finds the windows worth training on; ``pairs`` reads them from the
slides, ``shards`` writes them once and reads them back identically; ``loop`` trains one (level, unet).
"""
