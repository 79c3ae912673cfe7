"""Parse a traits document (Markdown or YAML) into validated, hashed Trait records."""

from traitforge.traits.parse import load_traits, parse_markdown, parse_yaml

__all__ = ["load_traits", "parse_markdown", "parse_yaml"]
