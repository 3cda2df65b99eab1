"""Pure domain rules: no database, no Flask, no clock."""
