"""What a run leaves besides its record: the compressed model saved and rebuilt (store, spec)
and exported (programs)."""
