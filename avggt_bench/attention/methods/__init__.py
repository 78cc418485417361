"""One module per attention method: its routes, their costs, references and microbenchmarks."""
