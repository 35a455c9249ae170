"""Task functions behind the CLI verbs (plain functions of a composed config)."""
