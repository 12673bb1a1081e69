"""Infrastructure every layer may use: files (atomic writes, temp folders), paths, configuration and
its schema, the experiment-folder layout, interrupts and console output. Imports no other mulap layer."""
