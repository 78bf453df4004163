"""Where a model looks: class activation maps, their summaries per emotion, and the figures drawn from them."""
