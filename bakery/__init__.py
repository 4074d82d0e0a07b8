"""The bakery: a static site generator and asset bakery for "This ___ Does Not Exist" sites."""

__version__ = "0.1.0"
