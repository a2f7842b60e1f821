"""Configuration: defaults grouped by concern, YAML + `KEY VALUE` overrides, frozen before use."""
from vmb.config.load import config_digest, config_from_yaml_text, flat_items, get_defaults, load_config

__all__ = ["config_digest", "config_from_yaml_text", "flat_items", "get_defaults", "load_config"]
