"""The `prep` command line: one small module per command, no logic beyond argument handling."""
